"""The images a config names, loaded and sized for one run.

The content photo is resized so its longest side is ``size``; each style image
(and an init image file) is resized to the content's exact height and width, as
in the paper. Without a content or style path, jstyle's default images are used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from jstyle import default_images
from jstyle.config import Config
from jstyle.errors import JStyleError
from jstyle.images import fit_longest, fitted_size, from_array, read_image, resize_to, to_array
from jstyle.transfer import INITS


class Inputs(NamedTuple):
    """Float32 RGB arrays in [0, 1], all of the content's shape, and where each came from."""

    content: np.ndarray
    styles: list[np.ndarray]
    init: str | np.ndarray  # one of INITS, or an image
    sources: dict


def load_inputs(config: Config, check: Callable[[int, int], object] | None = None) -> Inputs:
    """Read, convert and resize every image ``config`` names (defaults where it names none).

    ``check(height, width)`` is called with the output's size before anything is
    resized to it (the memory check), so that a size too large fails at once.
    """
    if config.content:
        content_image = read_image(config.content)
        content_source = config.content
    else:
        content_image = from_array(default_images.default_content_image())
        content_source = f"default:{default_images.DEFAULT_CONTENT_NAME}"
    width, height = fitted_size(*content_image.size, config.size)
    need = config.deepest_downsampling
    if min(height, width) < need:
        raise JStyleError(
            f"the content image is {width}x{height} px at size {config.size}: too small for the "
            f"deepest requested layer, which needs at least {need} px on each side; raise size"
        )
    if check is not None:
        check(height, width)
    content = to_array(fit_longest(content_image, config.size))

    if config.style:
        styles = [to_array(resize_to(read_image(p), height, width)) for p in config.style]
        style_sources = list(config.style)
    else:
        styles = [default_images.swirl_painting(height, width)]
        style_sources = [f"default:{default_images.DEFAULT_STYLE_NAME}"]

    init: str | np.ndarray = config.init
    if config.init not in INITS:
        init = to_array(resize_to(read_image(config.init), height, width))
    return Inputs(content, styles, init,
                  {"content": content_source, "style": style_sources, "init": config.init})
