"""The allowed values of every config key that takes one of a few words, and the defaults
that more than one layer needs, defined once and importable without JAX.

The modules that implement each choice (:mod:`jstyle.optimize`, :mod:`jstyle.vgg`,
:mod:`jstyle.color`, :mod:`jstyle.sharding`, :mod:`jstyle.weights`) take their lists from
here, and :mod:`jstyle.config` reads them here, so that ``python -m jstyle.run --help`` and a
config error answer before JAX, Flax or optax load.

References:
  Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks",
  CVPR 2016: L-BFGS (sec. 2), average pooling (sec. 2), white-noise start (sec. 3).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from jstyle.errors import JStyleError

__all__ = ["OPTIMIZERS", "PRECISIONS", "STYLE_LOSSES", "BLENDED_STYLE_LOSSES",
    "DRAWN_STYLE_LOSSES", "BALANCES", "BALANCE_RATIO",
    "LBFGS_BACKENDS", "LINE_SEARCHES", "BOUNDS", "POOLING", "INITS", "NOISE_AMPLITUDE",
    "PRESERVE_COLOR", "SHARDING_MODES", "BATCH_AXIS", "HEIGHT_AXIS", "TILE_AUTO", "MIN_TILE",
    "OUTPUT_FORMATS", "OUTPUT_BITS", "OUTPUT_SUFFIXES",
    "output_format_for", "BASE_VARIANT",
    "NORMALIZED_VARIANT", "VARIANT_FILES", "VARIANTS", "unknown_variant",
    "check_weights_value"]

#: ``tile_size``'s word for "tiles only when the whole image would not fit"
#: (:mod:`jstyle.memory`), and the smallest tile it takes in pixels: below it the halos
#: (80 px for the paper's layers, :mod:`jstyle.tiling`) are most of the work.
TILE_AUTO = "auto"
MIN_TILE = 64

#: Optimisers of the image: L-BFGS (the paper's) and Adam.
OPTIMIZERS: tuple[str, ...] = ("lbfgs", "adam")
#: Implementations of L-BFGS (:mod:`jstyle.optimize`).
LBFGS_BACKENDS: tuple[str, ...] = ("jstyle", "jaxopt")
#: Line searches, by L-BFGS backend (the first of each is its default).
LINE_SEARCHES: dict[str, tuple[str, ...]] = {
    "jstyle": ("backtracking", "none"),
    "jaxopt": ("zoom", "backtracking", "none"),
}
#: ``box``: every pixel kept in [0, 1] (the picture's own range); ``none``: unconstrained.
BOUNDS: tuple[str, ...] = ("box", "none")

#: The network's arithmetic: float32 (the paper), or bfloat16 where it is faster (see
#: :mod:`jstyle.precision`); the losses and the optimiser stay float32 either way.
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")

#: Style losses (:mod:`jstyle.losses`): the paper's Gram matrices (eq. 4), and the
#: statistics matched after it: per-channel mean and standard deviation (Li et al. 2017),
#: the 2-Wasserstein distance of fitted Gaussians, the sliced Wasserstein distance (Heitz et
#: al. 2021), histograms (Risser et al. 2017), MRF patches (Li & Wand 2016) and the relaxed
#: earth mover's distance (Kolkin et al. 2019, STROTSS).
STYLE_LOSSES: tuple[str, ...] = ("gram", "mean_std", "wasserstein", "sliced_wasserstein",
                                 "histogram", "mrf", "remd")
#: The style losses that blend several style images (by their Gram matrices' or their
#: statistics' mixture); the rest match one style image's distribution.
BLENDED_STYLE_LOSSES: tuple[str, ...] = ("gram", "mean_std", "wasserstein")
#: The style losses that draw something at random for a run (projections, sampled
#: positions), which ``redraw_every`` draws afresh.
DRAWN_STYLE_LOSSES: tuple[str, ...] = ("sliced_wasserstein", "mrf", "remd")

#: How alpha is set: ``fixed`` (content_weight as given, scaled by the pixel ratio in
#: coarse stages) or ``auto`` (measured at each stage's start so that the content term's
#: gradient is BALANCE_RATIO times the style term's; :mod:`jstyle.objective`).
BALANCES: tuple[str, ...] = ("fixed", "auto")
#: ``balance: auto``'s default ratio: what alpha/beta = 1e-3 gives at 512 px with the Gram
#: loss on jstyle's default images (0.38 measured; 0.017 at 128 px, 0.069 at 256).
BALANCE_RATIO = 0.4

#: VGG-19's pooling: average (the paper's) or max (as the network was trained).
POOLING: tuple[str, ...] = ("avg", "max")

#: Starting images of the optimisation (or an image file).
INITS: tuple[str, ...] = ("noise", "content", "style")
#: Spread of the white-noise start: each value uniform in 0.5 +- NOISE_AMPLITUDE / 2. The
#: paper does not state it. Uniform noise over all of [0, 1] survives in the result where
#: the network barely sees it (see the README's "Quality"); a twentieth of that leaves no
#: more fine texture than the painting has (measured at 512 px; a tenth left 6% more).
NOISE_AMPLITUDE = 0.05

#: Colour preservation (Gatys et al. 2016, "Preserving Color in Neural Artistic Style
#: Transfer"): none, luminance-only transfer, or histogram matching of the style first.
PRESERVE_COLOR: tuple[str, ...] = ("none", "luminance", "histogram")

#: Ways to run over several devices: none (one device), data parallel, spatial.
SHARDING_MODES: tuple[str, ...] = ("none", "batch", "spatial")
#: The device mesh's axis of data parallelism (a batch of photos) and of spatial sharding
#: (image rows).
BATCH_AXIS = "batch"
HEIGHT_AXIS = "height"

#: The files a run writes: an 8-bit PNG, a PNG of 16 bits per channel, or a TIFF of 16 bits
#: per channel (deflate-compressed), each the float image quantised once
#: (:func:`jstyle.preprocessing.quantize`) at the format's bit depth.
OUTPUT_FORMATS: tuple[str, ...] = ("png8", "png16", "tiff16")
#: Each output format's bits per channel: the quantisation the delivered loss is measured at.
OUTPUT_BITS: dict[str, int] = {"png8": 8, "png16": 16, "tiff16": 16}
#: The file name endings each output format takes (lower case; the first is its usual one).
OUTPUT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "png8": (".png",), "png16": (".png",), "tiff16": (".tif", ".tiff")}


def output_format_for(output: str, output_format: str | None) -> str:
    """The format of the file ``output`` names: ``output_format`` when given (its ending must
    be one of that format's), else the one its ending implies (.png: png8, .tif or .tiff:
    tiff16). A :class:`JStyleError` line, naming the fix, when the two disagree or the
    ending is none of them."""
    suffix = Path(output).suffix.lower()
    if output_format is None:
        for name in OUTPUT_FORMATS:  # png8 before png16: a plain .png is 8-bit
            if suffix in OUTPUT_SUFFIXES[name]:
                return name
        raise JStyleError(f"config key 'output': {output} must end in .png (output_format png8 "
                          "or png16) or .tif/.tiff (tiff16); rename it")
    if suffix not in OUTPUT_SUFFIXES[output_format]:
        usual = OUTPUT_SUFFIXES[output_format][0]
        others = [n for n in OUTPUT_FORMATS if suffix in OUTPUT_SUFFIXES[n]]
        instead = f", or set output_format to {' or '.join(others)}" if others else ""
        raise JStyleError(f"config key 'output_format': {output_format} writes "
                          f"{'/'.join(OUTPUT_SUFFIXES[output_format])} files, but output "
                          f"{output} ends in {suffix or 'no extension'}; name the output "
                          f"{Path(output).parent / (Path(output).stem + usual)}{instead}")
    return output_format


#: The network as trained (Simonyan & Zisserman).
BASE_VARIANT = "vgg19"
#: The paper's normalised network: every filter's mean rectified response is 1 (sec. 2).
NORMALIZED_VARIANT = "vgg19-normalized"
#: Each weights variant's file name in the cache folder.
VARIANT_FILES: dict[str, str] = {
    BASE_VARIANT: "vgg19-imagenet.h5",
    NORMALIZED_VARIANT: "vgg19-normalized.h5",
}
#: The variant names a config's ``weights`` may give instead of a file path.
VARIANTS: tuple[str, ...] = tuple(VARIANT_FILES)


def unknown_variant(name: str) -> JStyleError:
    """The one-line error for a weights variant name jstyle does not know."""
    close = difflib.get_close_matches(name, VARIANTS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return JStyleError(
        f"unknown weights variant {name!r}{hint}; choose one of {', '.join(VARIANTS)}, "
        f"or give the path of a jstyle weights file (.h5)"
    )


def check_weights_value(text: str) -> None:
    """Raise :func:`unknown_variant` for a ``weights`` value that reads as a variant name (no
    folder, no extension) but is neither a variant nor an existing file; a cheap check a
    config runs before anything loads."""
    if text in VARIANTS:
        return
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # "~name" with no such user: a file name like any other
        path = Path(text)
    if not path.is_file() and "/" not in text and os.sep not in text and not path.suffix:
        raise unknown_variant(text)
