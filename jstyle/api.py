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
NOT_KEYWORDS = ("content", "style", "masks", "output", "save_every")


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
        remat=config.remat,
    )
    solver = make_solver(
        config.optimizer,
        lbfgs_backend=config.lbfgs_backend,
        lbfgs_memory=config.lbfgs_memory,
        learning_rate=config.learning_rate,
        line_search=config.line_search,
        bounds=config.bounds,
    )
    return objective, solver


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import jax

    return np.asarray(jax.image.resize(np.asarray(image, np.float32), (height, width, 3),
                                       "linear", antialias=True))


def _resized_masks(masks: np.ndarray | None, height: int, width: int) -> np.ndarray | None:
    if masks is None:
        return None
    import jax

    return np.asarray(jax.image.resize(np.asarray(masks, np.float32),
                                       (len(masks), height, width), "linear", antialias=True))


def coarse_stages(weights, content, styles, init, config: Config, log=None, masks=None):
    """Gatys et al. 2017's coarse-to-fine: the transfer at each of ``coarse_sizes`` in turn,
    each started from the previous result upsampled; returns the last image, at the size of
    ``content``, to start the full-size stage from, and a record of each stage.

    Eq. 1's content loss grows with the number of pixels while eq. 4's style loss (divided
    by M^2) does not, so at a smaller size the same alpha/beta favours style. Each coarse
    stage therefore scales alpha by the ratio of pixel counts, to strike the balance the
    full-size stage will."""
    import dataclasses

    from jstyle.images import fitted_size
    from jstyle.inputs import style_size
    from jstyle.transfer import stylize as transfer

    objective, solver = objective_and_solver(config, weights.preprocessing)
    height, width = content.shape[:2]
    image, stages = init, []
    for number, size in enumerate(config.coarse_sizes, start=1):
        w, h = fitted_size(width, height, size)
        sh, sw = style_size(h, w, config)
        if log:
            log(f"jstyle: coarse stage {number}/{len(config.coarse_sizes)}: {w}x{h} px, "
                f"{config.stage_iterations} iterations")
        start = image if isinstance(image, str) else _resized(image, h, w)
        alpha = config.content_weight * (height * width) / (h * w)
        stage = dataclasses.replace(objective, content_weight=alpha)
        result = transfer(weights.params, _resized(content, h, w),
                          [_resized(s, sh, sw) for s in styles], stage, solver,
                          iterations=config.stage_iterations, init=start, seed=config.seed,
                          noise_amplitude=config.noise_amplitude,
                          style_blend=config.style_blend, masks=_resized_masks(masks, h, w))
        if result.stopped:
            raise JStyleError(f"coarse stage at {size} px stopped: {result.stopped}")
        image = result.image
        stages.append({"size": size, "width": w, "height": h, "content_weight": alpha,
                       "iterations": len(result.history), "loss": result.terms["total"],
                       "delivered_loss": result.delivered["total"],
                       "evaluations": result.evaluations,
                       "seconds": sum(v for k, v in result.timings.items() if k.endswith("_s"))})
    return (image if isinstance(image, str) else _resized(image, height, width)), stages


def run_transfer(weights, inputs, config: Config, *, done: int = 0, resumed=None,
                 on_progress=None, log=None):
    """One transfer as a config describes it, on sized inputs (:mod:`jstyle.inputs`):
    colour preservation and coarse-to-fine stages around :func:`jstyle.transfer.stylize`.
    Shared by the command line and :func:`stylize`. ``done``/``resumed``: iterations
    already made at full size and the image they reached (``--resume``; the coarse stages
    are then skipped). With ``sharding: spatial`` the full-size stage runs with the image's
    rows split over every device (:func:`jstyle.sharding.stylize_spatial`). Returns the
    result -- its image with the content's colours restored when the config asks for it;
    :class:`jstyle.transfer.Interrupted` carries the same -- and the coarse stages'
    records."""
    from jstyle import color
    from jstyle.cache import enable_compilation_cache
    from jstyle.transfer import Interrupted
    from jstyle.transfer import stylize as transfer

    enable_compilation_cache()
    objective, solver = objective_and_solver(config, weights.preprocessing)
    content, styles = color.prepare(config.preserve_color, inputs.content, inputs.styles)
    if resumed is not None:  # saved with the content's colours: back to what was optimised
        resumed = color.prepare(config.preserve_color, resumed, [])[0]

    def finish(result):
        return result._replace(image=color.finish(config.preserve_color, result.image,
                                                  inputs.content))

    init, stages = inputs.init, []
    if resumed is not None:
        init = resumed
    elif config.coarse_sizes:
        init, stages = coarse_stages(weights, content, styles, inputs.init, config, log,
                                     inputs.masks)
    run = functools.partial(transfer, masks=inputs.masks)
    if config.sharding == "spatial":  # masks are refused with sharding by the config
        from jstyle.sharding import stylize_spatial as run
    try:
        result = run(weights.params, content, styles, objective, solver,
                     iterations=config.iterations - done, init=init, seed=config.seed,
                     noise_amplitude=config.noise_amplitude,
                     style_blend=config.style_blend, save_every=config.save_every,
                     on_progress=on_progress)
    except Interrupted as stop:
        raise Interrupted(finish(stop.result)) from None
    return finish(result), stages


@functools.lru_cache(maxsize=2)
def _weights(path: str, modified: float):
    from jstyle.weights import load_weights

    return load_weights(path)


def load_cached_weights(path: str | None, log=print):
    """The weights a config names -- a file, or a variant name such as ``vgg19-normalized``
    (provisioned on first use) -- loaded once per file version."""
    from jstyle.weights import resolve_weights

    resolved = resolve_weights(path, log=log)
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
        raise JStyleError(f"{', '.join(wrong)}: pass images as arguments of stylize() "
                          "(files and save_every belong to the command line)")
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
    if init is None and settings.init not in INITS:  # the init key named a file
        init = settings.init

    from jstyle.inputs import prepare_inputs
    from jstyle.memory import check_memory
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
        result, _ = run_transfer(weights, inputs, settings,
                                 on_progress=bar.update if progress else None)
    if result.stopped:
        raise JStyleError(f"stylize stopped: {result.stopped}")
    image = np.clip(result.image, 0.0, 1.0).astype(np.float32)
    if isinstance(content, np.ndarray):
        return image
    from jstyle.images import from_array

    return from_array(image)
