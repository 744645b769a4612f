"""Run configuration: every key, its default and its meaning, defined once, and validated.

Configs are YAML mappings (read with ``yaml.safe_load``: tags that would build
Python objects are refused). Values may be overridden one key at a time with
``key=value`` strings (the value parsed as YAML). Everything is checked here,
before anything is compiled, and each problem is one :class:`JStyleError` line.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from jstyle.errors import JStyleError
from jstyle.layers import LAYERS, PAPER_CONTENT_LAYERS, PAPER_STYLE_LAYERS, downsampling
from jstyle.options import (
    BALANCE_RATIO,
    BALANCES,
    BLENDED_STYLE_LOSSES,
    BOUNDS,
    DRAWN_STYLE_LOSSES,
    LBFGS_BACKENDS,
    LINE_SEARCHES,
    MIN_TILE,
    NOISE_AMPLITUDE,
    OPTIMIZERS,
    OUTPUT_BITS,
    OUTPUT_FORMATS,
    POOLING,
    PRECISIONS,
    PRESERVE_COLOR,
    SHARDING_MODES,
    STYLE_LOSSES,
    TILE_AUTO,
    check_weights_value,
    output_format_for,
)

__all__ = ["Config", "FIELDS", "resolve", "read_yaml", "parse_override", "BASE_KEY"]

LayerWeights = tuple[tuple[str, float], ...]


def _key(default: Any, help: str, **kw: Any) -> Any:  # noqa: A002 - the dataclass field's help
    return dataclasses.field(default=default, metadata={"help": help, **kw})


@dataclasses.dataclass(frozen=True)
class Config:
    """A resolved run configuration. Defaults are the paper's choices as printed (Gatys et
    al. 2016: layers, w_l, average pooling, white noise, L-BFGS, alpha/beta = 1e-3) on the
    network as trained; ``configs/paper.yaml`` adds the normalised network and the alpha/beta
    of its figures (README)."""

    content: str | None = _key(
        None, "content photo (any image Pillow reads), or a folder or glob pattern of them (a "
        "batch: one output each, in a folder named after output); none: jstyle's default "
        "(scikit-image's 'chelsea' photo)")
    style: tuple[str, ...] = _key(
        (), "style image(s), a path or a list; several are blended with equal weights; none: "
        "jstyle's generated swirl painting")
    style_blend_weights: tuple[float, ...] = _key(
        (), "one weight per style image, normalised to sum to 1 (none: equal weights); the "
        "style targets are the blended Gram matrices")
    masks: tuple[str, ...] = _key(
        (), "spatial control (Gatys et al. 2017, 'Controlling Perceptual Factors in Neural "
        "Style Transfer'): one mask image per style image, in the same order, resized to the "
        "content; white where that style applies, black where it does not (grey: partly); "
        "none: every style everywhere")
    style_scale: float = _key(1.0, "size of the style images relative to the content's (1: "
                              "the same size, as in the paper); smaller gives finer strokes")
    preserve_color: str = _key(
        "none", "keep the content's colours (Gatys et al. 2016, 'Preserving Color in Neural "
        "Artistic Style Transfer'): none, luminance (transfer on luminance only) or histogram "
        "(match the style images' colours to the content first)", choices=PRESERVE_COLOR)
    output: str = _key("out/stylized.png", "output image (.png, or .tif/.tiff for "
                       "output_format tiff16); a JSON sidecar is written beside it")
    output_format: str | None = _key(
        None, "the output file: png8 (8 bits per channel), png16 or tiff16 (16 bits per "
        "channel, for printing); the content photo's ICC profile and DPI are carried over; "
        "none: from output's extension (.png: png8, .tif/.tiff: tiff16)",
        choices=OUTPUT_FORMATS)
    size: int = _key(512, "longest side of the output in pixels; the content photo is resized "
                     "to it and the style image to the content's size (the paper)")
    iterations: int = _key(500, "optimiser steps")
    optimizer: str = _key("lbfgs", "lbfgs (the paper) or adam (less memory)", choices=OPTIMIZERS)
    lbfgs_backend: str = _key(
        "jstyle", "jstyle (its own L-BFGS in the box, L-BFGS-B's subspace step) or jaxopt "
        "(L-BFGS-B; L-BFGS with bounds: none)", choices=LBFGS_BACKENDS)
    line_search: str = _key(
        "backtracking", "L-BFGS's line search: backtracking (Armijo; usually one evaluation "
        "per iteration), none (the unit step: exactly one) or zoom (strong Wolfe; "
        "lbfgs_backend: jaxopt)",
        choices=tuple(dict.fromkeys(n for v in LINE_SEARCHES.values() for n in v)))
    bounds: str = _key(
        "box", "box (every pixel kept in [0, 1] while optimising, so the saved image is the "
        "optimum found) or none (unconstrained; clipped when saved, as before)",
        choices=BOUNDS)
    lbfgs_memory: int = _key(20, "L-BFGS history size (pairs of past steps kept)")
    learning_rate: float = _key(0.02, "Adam's step size, in units of the [0, 1] pixel range")
    coarse_sizes: tuple[int, ...] = _key(
        (), "coarse-to-fine (Gatys et al. 2017): sizes to run first, smallest first, each "
        "stage started from the previous result upsampled; the last stage is at size")
    coarse_iterations: int | None = _key(
        None, "iterations of each coarse stage (none: as many as iterations)")
    init: str = _key("noise", "starting image: noise (white noise, the paper), content, style, "
                     "or an image path")
    seed: int = _key(0, "random seed of the noise init")
    noise_amplitude: float = _key(
        NOISE_AMPLITUDE, "spread of the white-noise start: each value uniform in 0.5 +- "
        "amplitude/2 (1: uniform in [0, 1]; wider noise survives in the result)")
    content_weight: float = _key(1.0, "alpha of eq. 7 (balance: fixed)")
    style_weight: float = _key(1000.0, "beta of eq. 7 (the paper: alpha/beta = 1e-3)")
    content_layers: LayerWeights = _key(
        tuple((n, 1.0) for n in PAPER_CONTENT_LAYERS),
        "content layers: a list (weight 1 each) or a mapping layer: weight")
    style_layers: LayerWeights = _key(
        tuple((n, 1.0 / len(PAPER_STYLE_LAYERS)) for n in PAPER_STYLE_LAYERS),
        "style layers: a list (w_l = 1/count each, eq. 5) or a mapping layer: w_l")
    balance: str = _key(
        "fixed", "fixed (alpha is content_weight) or auto (alpha set at each stage's start so "
        "that the content term's gradient is balance_ratio times the style term's: one look "
        "at every size and under every style loss)", choices=BALANCES)
    balance_ratio: float = _key(
        BALANCE_RATIO, "balance: auto's ratio of the content gradient's norm to the style "
        "gradient's (larger: more content); the default is about alpha/beta = 1e-3 at 512 px")
    style_loss: tuple[tuple[str, float], ...] = _key(
        (("gram", 1.0),), "the style loss at every style layer: gram (the paper's Gram "
        "matrices, eq. 4), mean_std, wasserstein, sliced_wasserstein, histogram, mrf or remd "
        "(see the README's Style losses), or a mapping loss: weight to add several")
    redraw_every: int = _key(
        0, "draw sliced_wasserstein's projections (and mrf's and remd's sampled positions) "
        "afresh every N iterations, the optimiser continuing on each new draw (Heitz et al. "
        "2021 draw new projections for each L-BFGS run); 0: once per run")
    pooling: str = _key("avg", "avg (the paper) or max (as VGG-19 was trained)", choices=POOLING)
    tv_weight: float = _key(0.0, "total-variation smoothing weight (0: off, as in the paper)")
    save_every: int = _key(0, "also save the image every N iterations (0: only at the end)")
    precision: str = _key(
        "float32", "the network's arithmetic: float32 (the paper) or bfloat16 (convolutions "
        "with float32 accumulation; losses and optimiser stay float32), used where it is "
        "faster: a GPU, or a CPU with AVX512-BF16/AMX through oneDNN (else float32, said)",
        choices=PRECISIONS)
    winograd: bool = _key(
        True, "float32 convolutions by Winograd's F(4x4, 3x3) through oneDNN where the CPU has "
        "that kernel (AVX-512): about three times XLA's speed, the same objective to a few "
        "parts in a million; false: XLA's direct convolutions (elsewhere they run anyway)")
    remat: bool = _key(False, "rematerialise VGG-19's blocks in the backward pass "
                       "(jax.checkpoint); the same result, about a fifth more time; measured "
                       "to lower no peak on CPU (see Scaling in the README)")
    tile_size: int | str = _key(
        TILE_AUTO, "exact tiled evaluation for images larger than memory: the network runs on "
        "tiles of this many pixels a side (plus halos), with the whole image's loss and "
        "gradient; 0: never; auto: tiles only when the whole image would need more than 80% "
        "of the memory available, then the largest that fit in half of it (style_loss gram "
        "only)")
    sharding: str = _key(
        "none", "several devices, with JAX's SPMD: none (one device), batch (a batch's photos "
        "split over the devices) or spatial (one image's rows split over the devices)",
        choices=SHARDING_MODES)
    weights: str | None = _key(
        None, "VGG-19 weights: vgg19 (the network as trained), vgg19-normalized (the paper's "
        "normalised network: every filter's mean response 1; made from vgg19 on first use), or "
        "a jstyle HDF5 file; none: vgg19, from $JSTYLE_WEIGHTS or the user cache, provisioned "
        "on first use")

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values (layers as mappings, paths as strings)."""
        out = dataclasses.asdict(self)
        out["style"] = list(self.style)
        out["style_blend_weights"] = list(self.style_blend_weights)
        out["masks"] = list(self.masks)
        out["coarse_sizes"] = list(self.coarse_sizes)
        out["content_layers"] = dict(self.content_layers)
        out["style_layers"] = dict(self.style_layers)
        out["style_loss"] = dict(self.style_loss)
        return out

    @property
    def image_format(self) -> str:
        """The format of the output file: output_format, or the one output's extension
        implies (:func:`jstyle.options.output_format_for`)."""
        return output_format_for(self.output, self.output_format)

    @property
    def image_bits(self) -> int:
        """Bits per channel of the output file: the quantisation of the delivered image."""
        return OUTPUT_BITS[self.image_format]

    @property
    def stage_iterations(self) -> int:
        """Iterations of each coarse stage."""
        return self.coarse_iterations or self.iterations

    @property
    def style_blend(self) -> tuple[float, ...] | None:
        """The blend weights normalised to sum to 1, or None for equal weights."""
        total = sum(self.style_blend_weights)
        return tuple(w / total for w in self.style_blend_weights) if total else None

    @property
    def deepest_downsampling(self) -> int:
        """How many times the deepest requested layer is smaller than the image."""
        return max(downsampling(n) for n, _ in self.content_layers + self.style_layers)

    @property
    def smallest_side(self) -> int:
        """The fewest pixels each side of an image needs: one position at the deepest
        requested layer; three with ``style_loss: mrf`` (a 3x3 patch of responses)."""
        patch = 3 if any(name == "mrf" for name, _ in self.style_loss) else 1
        return self.deepest_downsampling * patch


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Config)}


def _fail(key: str, problem: str) -> JStyleError:
    return JStyleError(f"config key {key!r}: {problem}")


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: Largest whole number a key takes (seeds must fit jax.random.key's 64-bit range).
MAX_INT = 2**63 - 1
#: Largest weight: anything near float32's limit makes the loss overflow.
MAX_WEIGHT = 1e30


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_number(value: Any) -> Any:
    """``"1e5"`` -> ``100000.0``: YAML 1.1 reads exponents without a dot or sign as strings."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def _number(key: str, value: Any, kind: type, minimum: float, strict: bool = False) -> Any:
    value = _as_number(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(key, f"expected a number, got {_shown(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(key, f"must be a finite number, got {value!r}")
    if kind is int and (isinstance(value, float) and not value.is_integer()):
        raise _fail(key, f"expected a whole number, got {value!r}")
    maximum = MAX_INT if kind is int else MAX_WEIGHT
    if value > maximum:
        raise _fail(key, f"must be at most {maximum:g}, got {_shown(value)}")
    value = kind(value)
    if value < minimum or (strict and value == minimum):
        bound = f"greater than {minimum}" if strict else f"at least {minimum}"
        raise _fail(key, f"must be {bound}, got {_shown(value)}")
    return value + 0  # -0.0 -> 0.0


def _optional_path(key: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise _fail(key, f"expected a file path, got {value!r}")


def _weights(value: Any) -> str | None:
    """A variant name (checked here, before anything loads) or a weights file's path."""
    text = _optional_path("weights", value)
    if text is not None:
        try:
            check_weights_value(text)
        except JStyleError as e:
            raise _fail("weights", str(e)) from None
    return text


def _layers(key: str, value: Any, list_weight: str) -> LayerWeights:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        if not value:
            raise _fail(key, "needs at least one layer")
        if not all(isinstance(name, str) for name in value):
            raise _fail(key, f"expected layer names, got {_shown(value)}")
        if len(set(value)) != len(value):
            twice = sorted({n for n in value if value.count(n) > 1})
            raise _fail(key, f"lists {', '.join(twice)} more than once")
        weight = 1.0 / len(value) if list_weight == "mean" else 1.0
        value = {name: weight for name in value}
    if not isinstance(value, Mapping) or not value:
        raise _fail(key, f"expected a list of layers or a mapping layer: weight, got "
                    f"{_shown(value)}")
    return _weighted(key, value, LAYERS, "layer", "valid layers")


def _weighted(key: str, value: Mapping, allowed: tuple[str, ...], what: str,
              listed: str) -> tuple[tuple[str, float], ...]:
    """A mapping name: weight, each name one of ``allowed`` and each weight >= 0."""
    pairs = []
    for name, weight in value.items():
        if name not in allowed:
            raise _fail(key, f"unknown {what} {name!r}{_suggest(str(name), allowed)}; "
                        f"{listed}: {', '.join(allowed)}")
        pairs.append((name, _number(f"{key}.{name}", weight, float, 0.0)))
    return tuple(pairs)


def _style_loss(value: Any) -> tuple[tuple[str, float], ...]:
    key = "style_loss"
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(name, str) for name in value) and value:
        value = dict.fromkeys(value, 1.0)
    if not isinstance(value, Mapping) or not value:
        raise _fail(key, f"expected a loss name or a mapping loss: weight, got {_shown(value)}")
    pairs = _weighted(key, value, STYLE_LOSSES, "style loss", "choose from")
    if not any(w > 0 for _, w in pairs):
        raise _fail(key, "needs at least one loss with a weight above 0")
    return pairs


def _validate(key: str, value: Any) -> Any:
    """One key's value, checked and normalised."""
    choices = FIELDS[key].metadata.get("choices")
    if key == "weights":
        return _weights(value)
    if key == "content":
        return _optional_path(key, value)
    if key in ("style", "masks"):
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
            raise _fail(key, f"expected a path or a list of paths, got {value!r}")
        return tuple(items)
    if key == "coarse_sizes":
        items = [] if value is None else value if isinstance(value, list) else [value]
        return tuple(_number(f"{key}[{i}]", s, int, 1) for i, s in enumerate(items))
    if key == "coarse_iterations":
        return None if value is None else _number(key, value, int, 1)
    if key == "style_blend_weights":
        items = [] if value is None else value if isinstance(value, list) else [value]
        return tuple(_number(f"{key}[{i}]", w, float, 0.0) for i, w in enumerate(items))
    if key in ("output", "init"):
        if not isinstance(value, str) or not value:
            raise _fail(key, f"expected a non-empty string, got {value!r}")
        return value
    if key == "output_format" and value is None:  # from output's extension
        return None
    if key == "lbfgs_backend" and value == "optax":
        raise _fail(key, "'optax' is gone: it could neither keep the pixels in [0, 1] nor "
                    "report its loss terms without an extra pass; use jstyle (the default) "
                    "or jaxopt")
    if choices:
        if value not in choices:
            raise _fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value
    if key == "tile_size":
        if value == TILE_AUTO:
            return value
        if isinstance(value, str) and not isinstance(_as_number(value), (int, float)):
            raise _fail(key, f"must be 0 (off), {TILE_AUTO} or a tile size in pixels, got "
                        f"{value!r}")
        value = _number(key, value, int, 0)
        if 0 < value < MIN_TILE:
            raise _fail(key, f"must be 0 (off), auto or at least {MIN_TILE} px (smaller "
                        f"tiles spend most of their work on halos), got {value}")
        return value
    if key in ("remat", "winograd"):
        if not isinstance(value, bool):
            raise _fail(key, f"expected true or false, got {_shown(value)}")
        return value
    if key in ("size", "iterations", "lbfgs_memory"):
        return _number(key, value, int, 1)
    if key in ("seed", "save_every", "redraw_every"):
        return _number(key, value, int, 0)
    if key == "noise_amplitude":
        value = _number(key, value, float, 0.0)
        if value > 1.0:
            raise _fail(key, f"must be at most 1 (noise beyond [0, 1] would be clipped), got "
                        f"{value!r}")
        return value
    if key in ("learning_rate", "style_scale", "balance_ratio"):
        return _number(key, value, float, 0.0, strict=True)
    if key in ("content_weight", "style_weight", "tv_weight"):
        return _number(key, value, float, 0.0)
    if key == "style_loss":
        return _style_loss(value)
    if key == "content_layers":
        return _layers(key, value, "one")
    if key == "style_layers":
        return _layers(key, value, "mean")
    raise AssertionError(f"no validator for {key}")  # every field has a branch above


def resolve(values: Mapping[str, Any]) -> Config:
    """A :class:`Config` from raw values (defaults for the rest), every key validated."""
    checked = {}
    for key, value in values.items():
        if key not in FIELDS:
            raise JStyleError(f"unknown config key {key!r}{_suggest(str(key), FIELDS)}; valid "
                              f"keys: {', '.join(FIELDS)}")
        checked[key] = _validate(key, value)
    config = Config(**checked)
    output_format_for(config.output, config.output_format)  # the extension must fit
    sizes = (*config.coarse_sizes, config.size)
    if any(a >= b for a, b in itertools.pairwise(sizes)):
        raise _fail("coarse_sizes", f"must grow, smallest first, and stay below size "
                    f"({config.size}); got {list(config.coarse_sizes)}")
    least = max(2 * config.deepest_downsampling, config.smallest_side)
    if config.coarse_sizes and config.coarse_sizes[0] < least:
        raise _fail("coarse_sizes", f"{config.coarse_sizes[0]} px is too small for the deepest "
                    f"requested layer; use at least {least}")
    if config.optimizer == "lbfgs" and \
            config.line_search not in LINE_SEARCHES[config.lbfgs_backend]:
        others = [b for b, names in LINE_SEARCHES.items() if config.line_search in names]
        raise _fail("line_search", f"{config.line_search} is not offered by lbfgs_backend "
                    f"{config.lbfgs_backend} (its: "
                    f"{', '.join(LINE_SEARCHES[config.lbfgs_backend])}); set lbfgs_backend: "
                    f"{others[0]}")
    blend = config.style_blend_weights
    count = max(len(config.style), 1)  # no style path: jstyle's one default image
    if config.masks:
        if len(config.masks) != count:
            raise _fail("masks", f"has {len(config.masks)} masks for {count} style image(s); "
                        "give one mask per style image, in the same order")
        if blend:
            raise _fail("masks", "each style image styles its own masked region, so "
                        "style_blend_weights (which blends styles everywhere) does not apply; "
                        "drop one of the two")
    others = [name for name, _ in config.style_loss if name != "gram"]
    if config.masks and others:
        raise _fail("style_loss", f"{', '.join(others)} has no per-region form: masks "
                    "need style_loss: gram")
    if config.redraw_every and not set(others) & set(DRAWN_STYLE_LOSSES):
        raise _fail("redraw_every", f"only {', '.join(DRAWN_STYLE_LOSSES)} draw anything to "
                    "draw afresh; set redraw_every: 0, or add one of them to style_loss")
    single = [name for name in others if name not in BLENDED_STYLE_LOSSES]
    if count > 1 and single:
        raise _fail("style_loss", f"{', '.join(single)} matches one style image's "
                    f"distribution, and {count} are given; give one, or use "
                    f"{', '.join(BLENDED_STYLE_LOSSES)} (which blend several)")
    if config.tile_size not in (0, TILE_AUTO) and others:
        raise _fail("tile_size", f"{', '.join(others)} is not a sum over positions, so it "
                    "cannot be summed tile by tile; use style_loss: gram, or tile_size: 0")
    if config.sharding != "none" and config.masks:
        raise _fail("sharding", "spatial control (masks) runs on one device; set sharding: none")
    if config.sharding == "batch" and config.preserve_color != "none":
        raise _fail("sharding", "batch sharding shares one style target across the batch, "
                    "while preserve_color makes one per photo; set preserve_color: none, or "
                    "sharding: none")
    if config.sharding == "batch" and config.balance == "auto":
        raise _fail("sharding", "balance: auto measures alpha per photo, while batch sharding "
                    "shares one; set balance: fixed, or sharding: none")
    if config.sharding == "batch" and config.coarse_sizes:
        raise _fail("sharding", "batch sharding runs at one size; drop coarse_sizes, or set "
                    "sharding: none to run the batch's images one after another")
    if blend:
        if len(blend) != count:
            raise _fail("style_blend_weights", f"has {len(blend)} weights for {count} style "
                        "image(s); give one per style image")
        if not sum(blend) > 0:
            raise _fail("style_blend_weights", "must not all be 0")
    if config.size < least:
        why = " (style_loss mrf: a 3x3 patch)" if least > 2 * config.deepest_downsampling else ""
        raise _fail("size", f"{config.size} px is too small for the deepest requested "
                    f"layer{why}; use at least {least}")
    return config


#: The key by which a YAML config names the config it overrides.
BASE_KEY = "base"


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping in a YAML config file (safe loader; position of any syntax error).

    A file may name another with ``base: other.yaml`` (relative to its own folder) and state
    only what differs: the base's keys are read first, this file's win, and a base may have
    a base of its own."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JStyleError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise JStyleError(f"cannot read config file {path}: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if isinstance(e, yaml.constructor.ConstructorError):
            problem = f"{problem} (tags that build Python objects are refused)"
        raise JStyleError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise JStyleError(f"config file {path} must hold a mapping of key: value, not "
                          f"{type(data).__name__}")
    if BASE_KEY not in data:
        return data
    base = data.pop(BASE_KEY)
    if not isinstance(base, str) or not base:
        raise JStyleError(f"config file {path}: {BASE_KEY} must name a YAML config file, got "
                          f"{_shown(base)}")
    base_path = path.parent / base
    chain = (*_seen, path.resolve())
    if base_path.resolve() in chain:
        raise JStyleError(f"config file {path}: {BASE_KEY} {base} leads back to "
                          f"{base_path}; a config cannot be its own base")
    return {**read_yaml(base_path, chain), **data}


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)``, the value parsed as YAML (``size=256`` is an int)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise JStyleError(f"--set expects key=value, got {text!r}")
    try:
        return key, yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return key, raw
