"""One style transfer, start to finish, on arrays: targets, initial image, optimisation.

Knows nothing of files or terminals: images come in as float32 RGB arrays in
[0, 1] and the caller hears of progress through a callback.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle.objective import Objective, Targets, compute_targets, loss_terms, objective_and_terms
from jstyle.optimize import Solver, run_steps
from jstyle.options import INITS, NOISE_AMPLITUDE
from jstyle.preprocessing import delivered

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


@functools.partial(jax.jit, static_argnames=("objective",))
def _targets(params, content, styles, blend, masks, *, objective):
    return compute_targets(params, content, styles, objective, blend, masks)


@functools.partial(jax.jit, static_argnames=("objective",))
def _terms(image, params, targets, *, objective):
    return loss_terms(image, params, targets, objective)


@functools.partial(jax.jit, static_argnames=("objective", "solver"))
def _init_state(image, params, targets, *, objective, solver):
    return solver.init(lambda x: objective_and_terms(x, params, targets, objective), image)


@functools.partial(jax.jit, static_argnames=("objective", "solver", "chunk"),
                   donate_argnames=("image", "state"))
def _run_chunk(image, state, n, params, targets, *, objective, solver, chunk):
    fun = functools.partial(objective_and_terms, params=params, targets=targets,
                            objective=objective)
    return run_steps(solver, fun, image, state, n, chunk)


def host_terms(terms) -> dict[str, float]:
    """Loss terms as plain floats."""
    return {k: float(v) for k, v in terms.items()}


#: Compiled optimisation chunks by input shapes and static settings, for this process.
_COMPILED: dict = {}


class Progress(NamedTuple):
    """What the caller hears after each chunk of iterations."""

    iteration: int  # iterations done so far
    image: Array  # the current image
    terms: dict[str, float]  # loss_terms of the last point the optimiser evaluated
    history: list[float]  # total loss after each iteration of the chunk
    evaluations: int = 0  # objective evaluations so far


class Result(NamedTuple):
    """The optimised image, its loss terms, the loss after every iteration, the number of
    objective evaluations, timings, and why the run stopped early (if it did).

    ``terms`` are the optimiser's: eq. 7 of the float image it ended at. ``delivered`` are
    those of the image a user receives, the 8-bit rounding a PNG stores
    (:func:`jstyle.preprocessing.delivered`); with the pixels kept in the box the two agree
    to the rounding's effect."""

    image: np.ndarray
    terms: dict[str, float]
    history: list[float]  # one value per iteration done
    evaluations: int  # objective-and-gradient evaluations, line searches included
    timings: dict[str, float]
    stopped: str | None = None  # None: all iterations ran
    delivered: dict[str, float] | None = None  # loss terms of the saved 8-bit image
    evaluations_history: list[int] | None = None  # evaluations of each iteration


def needs_final_evaluation(last: dict[str, float] | None, solver) -> bool:
    """Whether the final image's terms must be evaluated: no step reported any (``last`` is
    None), or the solver reports on the point a step started from (Adam)."""
    return last is None or not solver.reports_new_point


def final_terms(image: np.ndarray, last: dict[str, float] | None, solver, evaluate
                ) -> tuple[dict[str, float], dict[str, float]]:
    """The optimiser's terms of the final ``image`` -- ``last``, those its last step
    reported, unless :func:`needs_final_evaluation` -- and the delivered image's, by
    ``evaluate(image) -> terms``."""
    if needs_final_evaluation(last, solver):
        last = host_terms(evaluate(image))
    return last, host_terms(evaluate(delivered(image)))


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, where the caller maps it) during :func:`stylize`; ``result`` holds
    the image and losses of the last completed chunk of iterations, so nothing is lost."""

    def __init__(self, result: Result) -> None:
        super().__init__("interrupted")
        self.result = result


def nan_stop_reason(kept: int, terms: dict) -> str:
    """Why a run stopped after iteration ``kept``: the next one's loss was NaN or infinite,
    in the loss terms ``terms`` (of the rejected image) that are not finite."""
    bad = [k for k, v in terms.items() if not np.isfinite(float(v)) and k != "total"]
    return (f"the loss became NaN or infinite at iteration {kept + 1} (in: "
            f"{', '.join(bad) if bad else 'the gradient'}); kept the image of iteration {kept}")


def chunk_size(iterations: int) -> int:
    """Most iterations per compiled chunk: about 1/50 of the run, at most 20."""
    return max(1, min(20, iterations // 50))


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
    on_progress: Callable[[Progress], None] | None = None,
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
      save_every: if > 0, ``on_progress`` is called on every multiple of it.
      on_progress: called after each chunk of iterations.

    A loss or image that becomes NaN or infinite stops the run: the result keeps
    the last finite image, and ``stopped`` names the iteration and the loss terms
    that went bad. Ctrl-C raises :class:`Interrupted`, carrying the result so far.
    """
    t0 = time.perf_counter()
    content = jnp.asarray(content, jnp.float32)
    style_stack = [jnp.asarray(s, jnp.float32) for s in styles]
    blend = None if style_blend is None else jnp.asarray(style_blend, jnp.float32)
    masks = None if masks is None else jnp.asarray(masks, jnp.float32)
    targets: Targets = _targets(params, content, style_stack, blend, masks, objective=objective)
    image = initial_image(init, content, style_stack[0], seed, noise_amplitude)
    image, state = _init_state(image, params, targets, objective=objective, solver=solver)
    jax.block_until_ready((targets, state))
    t_targets = time.perf_counter()

    chunk = chunk_size(iterations)
    key = (image.shape, str(image.dtype), objective, solver, chunk,
           jax.tree.structure(targets), tuple(v.shape for v in jax.tree.leaves(targets)))
    run = _COMPILED.get(key)
    if run is None:  # same-sized images (a batch) reuse one compiled program
        if len(_COMPILED) >= 8:
            _COMPILED.pop(next(iter(_COMPILED)))  # the oldest
        run = _COMPILED[key] = _run_chunk.lower(
            image, state, 0, params, targets, objective=objective, solver=solver, chunk=chunk
        ).compile()
    t_compiled = time.perf_counter()

    history: list[float] = []
    counts: list[int] = []  # evaluations of each iteration
    stopped = None
    saved = np.asarray(image)  # host copy of the last completed chunk's image
    last: dict[str, float] | None = None  # the terms the last step reported
    wasted = 0

    def evaluate(x):
        return _terms(jnp.asarray(x), params, targets, objective=objective)

    def evaluations() -> int:  # every evaluation so far, the initial one included
        return solver.init_evaluations + sum(counts) + wasted

    def result() -> Result:
        terms, received = final_terms(saved, last, solver, evaluate)
        t_end = time.perf_counter()
        timings = {
            "setup_s": t_targets - t0,
            "compile_s": t_compiled - t_targets,
            "optimize_s": t_end - t_compiled,
            "iterations_per_s": len(history) / max(t_end - t_compiled, 1e-9),
        }
        return Result(saved, terms, history, evaluations(), timings, stopped, received, counts)

    try:
        while len(history) < iterations and stopped is None:
            done = len(history)
            n = min(chunk, iterations - done)
            if save_every:  # chunks end on every multiple of save_every
                n = min(n, save_every - done % save_every)
            steps = run(image, state, n, params, targets)
            image, state = steps.x, steps.state
            failed = int(steps.failed_at)
            taken = n if failed < 0 else failed
            values, host_image = np.asarray(steps.history[:taken]).tolist(), np.asarray(image)
            spent = np.asarray(steps.evaluations).tolist()  # zero past the steps made
            wasted += sum(spent[taken:])  # a rejected (non-finite) step's evaluations
            spent = spent[:taken]
            terms = host_terms(steps.terms) if taken else last
            # All at once: an interrupt sees the image with its own history and terms.
            history, saved, counts, last = history + values, host_image, counts + spent, terms
            if failed >= 0:
                stopped = nan_stop_reason(done + failed, host_terms(steps.rejected_terms))
            if on_progress is not None:
                on_progress(Progress(len(history), image, last or host_terms(evaluate(image)),
                                     history[done:], evaluations()))
    except KeyboardInterrupt:
        stopped = f"interrupted after iteration {len(history)}"
        raise Interrupted(result()) from None
    return result()
