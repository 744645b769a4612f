"""The Python API: :func:`stylize`, the command line's twin for notebooks and scripts.

    import jstyle
    out = jstyle.stylize(photo, painting, size=256, iterations=200)

Images go in and come out as numpy arrays or PIL images; no file is written. The run is
the command line's (:mod:`jstyle.pipeline`); Ctrl-C raises
:class:`jstyle.engine.Interrupted`, whose ``result`` holds the image so far.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from jstyle.config import resolve
from jstyle.errors import JStyleError

__all__ = ["stylize"]

ImageLike = Union[Image.Image, np.ndarray, str, os.PathLike]  # noqa: UP007 - a runtime alias

#: Config keys of the command line only: :func:`stylize` writes no file. (``content``,
#: ``style``, ``masks`` and ``init`` are its arguments.)
NOT_KEYWORDS = ("output", "save_every")


def _pil(image: ImageLike, what: str) -> Image.Image:
    """A PIL image, a path, or an array ``(H, W)``/``(H, W, 3|4)`` (uint8, or float in [0, 1])."""
    from jstyle.images import from_array, read_image, to_rgb

    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, (str, os.PathLike)):
        return read_image(Path(image))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or min(array.shape[:2]) < 1:
        raise JStyleError(f"{what} must be an image (H, W, 3), (H, W, 4) or (H, W); got an "
                          f"array of shape {array.shape}")
    if array.dtype == np.uint8:
        return to_rgb(Image.fromarray(array))
    if array.shape[-1] == 4:  # float RGBA: composite onto white, like files
        rgb, alpha = array[..., :3], np.clip(array[..., 3:], 0, 1)
        array = rgb * alpha + (1 - alpha)
    return from_array(array.astype(np.float32))


def stylize(
    content: ImageLike | None = None,
    style: ImageLike | Sequence[ImageLike] | None = None,
    *,
    init: ImageLike | None = None,
    masks: Sequence[ImageLike] | None = None,
    progress: bool = False,
    **config: Any,
) -> np.ndarray | Image.Image:
    """Render ``content`` in the style of ``style``; the command line's run, in memory.

    Args:
      content: the photo: a PIL image, a numpy array (uint8, or float in [0, 1]), or a
        path. None: jstyle's default photo.
      style: one image like ``content``, or a list of them (blended; see the
        ``style_blend_weights`` key). None: jstyle's generated painting.
      init: an image to start from, or one of ``"noise"``, ``"content"``, ``"style"`` (the
        ``init`` key; default noise).
      masks: spatial control, one mask per style image (like ``content``; white where that
        style applies; see the ``masks`` key).
      progress: show a progress bar.
      **config: any config key but content, style, output and save_every (see the
        README or ``python -m jstyle.run --help``), e.g. ``size=256, iterations=200``.

    Returns:
      The result as a float32 numpy array ``(H, W, 3)`` in [0, 1] when ``content`` was an
      array, else as a PIL image.
    """
    wrong = [k for k in config if k in NOT_KEYWORDS]
    if wrong:
        raise JStyleError(f"{', '.join(wrong)}: stylize() writes no file and returns the "
                          "image; output and save_every belong to the command line")
    styles = [] if style is None else list(style) if isinstance(style, (list, tuple)) \
        else [style]
    values = dict(config)
    from jstyle.options import INITS

    if isinstance(init, str) and init in INITS:  # init="content": the key, not a file
        values["init"], init = init, None
    elif init is not None:
        values["init"] = "<image given to stylize()>"  # not one of INITS: an image
    # Stand-in names, so that resolve checks style_blend_weights against the images' count.
    masks = [] if masks is None else list(masks)
    settings = resolve({**values,
                        "style": [f"<style {i} given to stylize()>" for i in range(len(styles))],
                        "masks": [f"<mask {i} given to stylize()>" for i in range(len(masks))]})

    from jstyle.engine import Interrupted
    from jstyle.inputs import prepare_inputs
    from jstyle.memory import check_memory
    from jstyle.pipeline import load_cached_weights, run_transfer
    from jstyle.progress import ProgressBar

    inputs = prepare_inputs(
        settings,
        None if content is None else _pil(content, "content"),
        [_pil(s, f"style {i}") for i, s in enumerate(styles)],
        None if init is None else _pil(init, "init"),
        check=lambda h, w: check_memory(h, w, settings),
        masks=[_pil(m, f"mask {i}") for i, m in enumerate(masks)],
    )
    weights = load_cached_weights(settings.weights)
    with ProgressBar(settings.iterations, disable=not progress) as bar:
        outcome = run_transfer(weights, inputs, settings,
                               on_progress=bar.update if progress else None,
                               on_phase=bar.phase if progress else None)
    result = outcome.result
    if outcome.interrupted:
        raise Interrupted([result])
    if result.stopped:
        raise JStyleError(f"stylize stopped: {result.stopped}")
    image = np.clip(result.image, 0.0, 1.0).astype(np.float32)
    if isinstance(content, np.ndarray):
        return image
    from jstyle.images import from_array

    return from_array(image)
