"""The images of one run, converted and sized.

The content photo is resized so its longest side is ``size``; each style image is
resized to the content's exact height and width, as in the paper, times
``style_scale``; an init image is resized to the content's size. Without a
content or style image, jstyle's default images are used.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from jstyle import default_images
from jstyle.config import Config
from jstyle.errors import JStyleError
from jstyle.images import (
    IMAGE_SUFFIXES,
    DeepImage,
    PrintInfo,
    fit_longest,
    fitted_size,
    from_array,
    print_info,
    read_image,
    resize_to,
    to_array,
)
from jstyle.options import INITS


class Inputs(NamedTuple):
    """Float32 RGB arrays in [0, 1] (styles at the content's size times style_scale; init at
    the content's), spatial-control masks, where each came from, and what the output carries
    over from the content photo for printing (its ICC profile and DPI)."""

    content: np.ndarray
    styles: list[np.ndarray]
    init: str | np.ndarray  # one of INITS, or an image
    sources: dict
    masks: np.ndarray | None = None  # (R, H, W) in [0, 1] at the content's size, one per style
    print_info: PrintInfo = PrintInfo()




def content_paths(content: str | None) -> list[str] | None:
    """The content images of a batch -- ``content`` names a folder (its image files) or a
    glob pattern (``photos/*.jpg``) -- sorted; None when it names one image (or none)."""
    if not content:
        return None
    path = Path(content)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        where = f"folder {content}"
    elif any(c in content for c in "*?["):
        found = [Path(p) for p in glob.glob(content, recursive=True) if Path(p).is_file()]
        where = f"pattern {content}"
    else:
        return None
    if not found:
        raise JStyleError(f"no images in {where} (looked for {', '.join(IMAGE_SUFFIXES)})")
    stems = [p.stem for p in found]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise JStyleError(f"content images in {where} share names ({', '.join(twice)}): each "
                          "output is named after its content image; rename or split them")
    return [str(p) for p in sorted(found)]


def style_size(height: int, width: int, config: Config) -> tuple[int, int]:
    """(height, width) of the style images for a content of ``height`` x ``width``."""
    return max(1, round(height * config.style_scale)), max(1, round(width * config.style_scale))


def mask_array(image: Image.Image, height: int, width: int, name: str) -> np.ndarray:
    """A spatial-control mask resized to ``height`` x ``width``: float32 ``(H, W)`` in [0, 1],
    its grey level (white: the style applies). A mask black everywhere is an error."""
    mask = np.asarray(resize_to(image, height, width).convert("L"), np.float32) / 255.0
    if not mask.any():
        raise JStyleError(f"mask {name} is black everywhere at {width}x{height} px, so its style "
                          "would apply nowhere; paint white where that style belongs")
    return mask


def prepare_inputs(
    config: Config,
    content: Image.Image | DeepImage | None,
    styles: Sequence[Image.Image | DeepImage] | None,
    init: Image.Image | DeepImage | None = None,
    check: Callable[[int, int], object] | None = None,
    masks: Sequence[Image.Image] | None = None,
) -> Inputs:
    """Convert and size images already opened (None: jstyle's defaults).

    ``masks``: one per style image (spatial control), resized to the content's size.

    ``check(height, width)`` is called with the output's size before anything is
    resized to it (the memory check), so that a size too large fails at once.
    """
    if content is None:
        content = from_array(default_images.default_content_image())
    width, height = fitted_size(*content.size, config.size)
    style_h, style_w = style_size(height, width, config)
    need = config.smallest_side  # (style_loss mrf: a 3x3 patch at the deepest layer)
    if min(height, width) < need:
        raise JStyleError(
            f"the content image is {width}x{height} px at size {config.size}: too small for the "
            f"deepest requested layer, which needs at least {need} px on each side; raise size"
        )
    if min(style_h, style_w) < need:
        raise JStyleError(
            f"the style images would be {style_w}x{style_h} px at style_scale "
            f"{config.style_scale}: too small for the deepest requested layer, which needs at "
            f"least {need} px on each side; raise style_scale"
        )
    if check is not None:
        check(max(height, style_h), max(width, style_w))
    content_array = to_array(fit_longest(content, config.size))
    if styles:
        style_arrays = [to_array(resize_to(s, style_h, style_w)) for s in styles]
    else:
        style_arrays = [default_images.default_style_image(style_h, style_w)]
    init_value: str | np.ndarray = config.init if init is None else \
        to_array(resize_to(init, height, width))
    mask_arrays = None
    if masks:
        if len(masks) != len(style_arrays):
            raise JStyleError(f"{len(masks)} masks for {len(style_arrays)} style image(s); give "
                              "one mask per style image, in the same order")
        names = list(config.masks) if len(config.masks) == len(masks) else \
            [str(i) for i in range(len(masks))]
        mask_arrays = np.stack([mask_array(m, height, width, n)
                                for m, n in zip(masks, names, strict=True)])
    return Inputs(content_array, style_arrays, init_value, {}, mask_arrays)


def load_inputs(config: Config, check: Callable[[int, int], object] | None = None) -> Inputs:
    """Read every image ``config`` names (defaults where it names none), then
    :func:`prepare_inputs`; ``sources`` records the paths or default names. The content,
    style and start images are read deep (a 16-bit PNG or TIFF exactly, not rounded to 8
    bits); the content photo's ICC profile and DPI are kept for the output."""
    content = read_image(config.content, deep=True) if config.content else None
    styles = [read_image(p, deep=True) for p in config.style]
    init = read_image(config.init, deep=True) if config.init not in INITS else None
    masks = [read_image(p) for p in config.masks]
    inputs = prepare_inputs(config, content, styles, init, check, masks)
    sources = {
        "content": config.content or f"default:{default_images.DEFAULT_CONTENT_NAME}",
        "style": list(config.style) or [f"default:{default_images.DEFAULT_STYLE_NAME}"],
        "init": config.init,
    }
    if config.masks:
        sources["masks"] = list(config.masks)
    info = print_info(config.content) if config.content else PrintInfo()
    return inputs._replace(sources=sources, print_info=info)
