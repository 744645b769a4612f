"""One style transfer on one device, start to finish, on arrays: the initial image, then
:func:`jstyle.engine.optimise` over a mesh of one device.

Knows nothing of files or terminals: images come in as float32 RGB arrays in
[0, 1] and the caller hears of progress through a callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import engine
from jstyle.engine import Interrupted, Progress, Result  # a transfer's results, re-exported
from jstyle.objective import Objective
from jstyle.optimize import Solver
from jstyle.options import INITS, NOISE_AMPLITUDE

__all__ = ["initial_image", "stylize", "Progress", "Result", "Interrupted", "INITS",
    "NOISE_AMPLITUDE"]

Array = jax.Array



def initial_image(
    init: str | np.ndarray, content: Array, style: Array, seed: int,
    noise_amplitude: float = NOISE_AMPLITUDE,
) -> Array:
    """The optimisation's starting point, shaped like ``content``.

    ``init``: ``"noise"`` (white noise, the paper's default: each value uniform in
    ``0.5 +- noise_amplitude / 2``; 1 is uniform in [0, 1]; see :data:`NOISE_AMPLITUDE`),
    ``"content"``, ``"style"`` (the first style image), or an RGB array of the
    content's shape (an image file the caller has loaded and resized).
    """
    if isinstance(init, str):
        if init == "noise":
            u = jax.random.uniform(jax.random.key(seed), content.shape, content.dtype)
            return u if noise_amplitude == 1.0 else 0.5 + noise_amplitude * (u - 0.5)
        if init == "content":
            return jnp.asarray(content)
        if init == "style":  # resized if style_scale made it another size
            return jax.image.resize(jnp.asarray(style, content.dtype), content.shape, "linear")
        raise ValueError(f"init must be one of {INITS} or an image, not {init!r}")
    image = jnp.asarray(init, content.dtype)
    if image.shape != content.shape:
        raise ValueError(f"init image has shape {image.shape}, expected {content.shape}")
    return image


def stylize(
    params: dict,
    content: np.ndarray,
    styles: Sequence[np.ndarray],
    objective: Objective,
    solver: Solver,
    *,
    iterations: int,
    init: str | np.ndarray = "noise",
    seed: int = 0,
    noise_amplitude: float = NOISE_AMPLITUDE,
    style_blend: Sequence[float] | None = None,
    masks: np.ndarray | None = None,
    save_every: int = 0,
    state: Any = None,
    offset: int = 0,
    on_progress: Callable[[Progress], None] | None = None,
    mesh: Any = None,
    delivered_bits: int = 8,
    redraw_every: int = 0,
) -> Result:
    """Render ``content`` in the style of ``styles`` (already sized: the paper resizes them to
    the content's size; another size acts as a style scale).

    Args:
      params: VGG-19 parameters (see :mod:`jstyle.vgg`).
      content: RGB content photo in [0, 1], ``(H, W, 3)``.
      styles: RGB style images in [0, 1], all of one shape ``(H', W', 3)``.
      objective: layers and weights of eq. 7.
      solver: from :func:`jstyle.optimize.make_solver`.
      iterations: optimiser steps.
      init, seed, noise_amplitude: see :func:`initial_image`.
      style_blend: weights of the style images' Gram matrices (summing to 1; None: equal).
      masks: spatial control (Gatys et al. 2017): ``(R, H, W)`` in [0, 1] at the content's
        size, mask r giving the region styled by style image r (see
        :func:`jstyle.objective.compute_targets`); None: every style everywhere.
      save_every: if > 0, chunks end (and ``on_progress`` is called) on every multiple of it,
        counted from the run's start (``offset`` iterations before this call).
      state, offset: continue an interrupted run: ``init`` is the image it stopped at,
        ``state`` the solver state its :class:`Interrupted` result carried, ``offset`` the
        iterations it had made.
      on_progress: called after each chunk of iterations.
      mesh: where to run: None, this process's first device
        (:func:`jstyle.engine.one_device_mesh`); a one-axis mesh of several splits the
        image's rows over them (what :func:`jstyle.sharding.stylize_spatial` checks and
        passes).
      delivered_bits: bits per channel of the file the result is saved as: the result's
        ``delivered`` terms are of that quantisation (:func:`jstyle.preprocessing.delivered`).
      redraw_every: if > 0, what the style losses draw for a run (the sliced Wasserstein
        loss's projections, the MRF and relaxed-EMD losses' samples) is drawn afresh every
        that many iterations, counted from the run's start, and the solver continues on
        the new objective (:meth:`jstyle.optimize.LBFGS.rebase`).

    A loss or image that becomes NaN or infinite stops the run: the result keeps
    the last finite image, and ``stopped`` names the iteration and the loss terms
    that went bad. Ctrl-C raises :class:`Interrupted` at the end of the chunk it came
    in, carrying the result so far and the solver state (see :mod:`jstyle.engine`).
    """
    content = np.asarray(content, np.float32)
    styles = [np.asarray(s, np.float32) for s in styles]
    start = np.asarray(initial_image(init, jnp.asarray(content), jnp.asarray(styles[0]), seed,
                                     noise_amplitude), np.float32)

    def on_chunk(report: engine.Report) -> None:
        if on_progress is not None:
            history = report.histories[0]
            on_progress(Progress(len(history), report.images[0], report.terms()[0],
                                 history[on_chunk.reported:], report.evaluations[0]))
            on_chunk.reported = len(history)

    on_chunk.reported = 0
    (result,) = engine.optimise(
        params, content, styles, style_blend, masks, start, objective, solver,
        iterations=iterations, mesh=mesh or engine.one_device_mesh(), batched=False,
        state=state,
        offset=offset, save_every=save_every, on_chunk=on_chunk,
        delivered_bits=delivered_bits, redraw_every=redraw_every)
    return result
