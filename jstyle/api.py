"""The Python API: :func:`stylize`, the command line's twin for notebooks and scripts.

    import jstyle
    out = jstyle.stylize(photo, painting, size=256, iterations=200)

Images go in and come out as numpy arrays or PIL images; no file is written.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from jstyle.config import Config, resolve
from jstyle.errors import JStyleError

ImageLike = Union[Image.Image, np.ndarray, str, os.PathLike]  # noqa: UP007 - a runtime alias

#: Keys that are arguments of :func:`stylize` (or, for files, of the command line only).
NOT_KEYWORDS = ("content", "style", "output", "save_every")


def objective_and_solver(config: Config, preprocessing):
    """The :class:`jstyle.objective.Objective` and solver a config describes."""
    from jstyle.objective import Objective
    from jstyle.optimize import make_solver

    objective = Objective(
        content_layers=config.content_layers,
        style_layers=config.style_layers,
        content_weight=config.content_weight,
        style_weight=config.style_weight,
        tv_weight=config.tv_weight,
        pooling=config.pooling,
        preprocessing=preprocessing,
    )
    solver = make_solver(
        config.optimizer,
        lbfgs_backend=config.lbfgs_backend,
        lbfgs_memory=config.lbfgs_memory,
        learning_rate=config.learning_rate,
    )
    return objective, solver


@functools.lru_cache(maxsize=2)
def _weights(path: str, modified: float):
    from jstyle.weights import load_weights

    return load_weights(path)


def load_cached_weights(path: str | None):
    """The weights a config names (provisioned on first use), loaded once per file version."""
    from jstyle.weights import ensure_weights

    resolved = ensure_weights(path)
    return _weights(str(resolved), resolved.stat().st_mtime)


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
    progress: bool = False,
    **config: Any,
) -> np.ndarray | Image.Image:
    """Render ``content`` in the style of ``style``; the command line's run, in memory.

    Args:
      content: the photo: a PIL image, a numpy array (uint8, or float in [0, 1]), or a
        path. None: jstyle's default photo.
      style: one image like ``content``, or a list of them (blended; see the
        ``style_blend_weights`` key). None: jstyle's generated painting.
      init: an image to start from (else the ``init`` key: noise, content or style).
      progress: show a progress bar.
      **config: any config key but content, style, output and save_every (see the
        README or ``python -m jstyle.run --help``), e.g. ``size=256, iterations=200``.

    Returns:
      The result as a float32 numpy array ``(H, W, 3)`` in [0, 1] when ``content`` was an
      array, else as a PIL image.
    """
    wrong = [k for k in config if k in NOT_KEYWORDS]
    if wrong:
        raise JStyleError(f"{', '.join(wrong)}: pass images as arguments of stylize() "
                          "(files and save_every belong to the command line)")
    styles = [] if style is None else list(style) if isinstance(style, (list, tuple)) \
        else [style]
    values = dict(config)
    if init is not None:
        values["init"] = "<image given to stylize()>"  # not one of INITS: an image
    # Stand-in names, so that resolve checks style_blend_weights against the images' count.
    settings = resolve({**values, "style": [f"<style {i} given to stylize()>"
                                            for i in range(len(styles))]})
    from jstyle.transfer import INITS

    if init is None and settings.init not in INITS:  # the init key named a file
        init = settings.init

    from jstyle.cache import enable_compilation_cache
    from jstyle.inputs import prepare_inputs
    from jstyle.memory import check_memory
    from jstyle.progress import ProgressBar
    from jstyle.transfer import stylize as run_transfer

    inputs = prepare_inputs(
        settings,
        None if content is None else _pil(content, "content"),
        [_pil(s, f"style {i}") for i, s in enumerate(styles)],
        None if init is None else _pil(init, "init"),
        check=lambda h, w: check_memory(h, w, settings),
    )
    weights = load_cached_weights(settings.weights)
    enable_compilation_cache()
    objective, solver = objective_and_solver(settings, weights.preprocessing)
    with ProgressBar(settings.iterations, disable=not progress) as bar:
        result = run_transfer(weights.params, inputs.content, inputs.styles, objective, solver,
                              iterations=settings.iterations, init=inputs.init,
                              seed=settings.seed, style_blend=settings.style_blend,
                              on_progress=bar.update if progress else None)
    if result.stopped:
        raise JStyleError(f"stylize stopped: {result.stopped}")
    image = np.clip(result.image, 0.0, 1.0).astype(np.float32)
    if isinstance(content, np.ndarray):
        return image
    from jstyle.images import from_array

    return from_array(image)
