"""The one host loop of every transfer: targets, compilation, chunks of optimiser steps,
progress, the non-finite stop, interrupts, timings and resume, on one device or many.

Every run is an SPMD program over a one-axis device mesh (``jax.sharding``): one device
is a mesh of one (:func:`jstyle.transfer.stylize`), a data-parallel batch shards its photos
over the mesh (:func:`jstyle.sharding.stylize_batch`), a spatial run an image's rows
(:func:`jstyle.sharding.stylize_spatial`). :func:`optimise` runs all three with the same
code: each problem -- one photo -- has its own solver state, history and stop.

Between chunks the host sees a consistent run: the image, solver state, history and loss
terms of the last completed chunk. A stop asked for while a chunk (or a compilation) runs
-- Ctrl-C, SIGTERM where the caller maps it, or :func:`request_stop` -- takes effect at the
next chunk boundary and raises :class:`Interrupted` carrying each problem's result and
solver state (the L-BFGS history included), from which ``optimise(state=...)`` continues
exactly where it stopped. An interrupt is never raised inside JAX: a ``KeyboardInterrupt``
that lands in the middle of XLA's compilation or dispatch can leave the runtime in a state
that crashes the interpreter on the way out.

References:
  Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks",
  CVPR 2016: eq. 7 minimised over the pixels with L-BFGS.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jstyle import programs
from jstyle.objective import (
    Objective,
    compute_targets,
    loss_terms,
    network_params,
    objective_and_terms,
)
from jstyle.optimize import Solver, for_spatial_split, run_steps
from jstyle.options import HEIGHT_AXIS
from jstyle.preprocessing import delivered

__all__ = ["Progress", "BatchProgress", "Result", "Interrupted", "Report", "optimise",
    "request_stop", "stop_requested", "running", "check_stop", "stoppable", "make_mesh",
    "one_device_mesh", "state_leaves", "state_template", "state_from_leaves", "chunk_size"]

Array = jax.Array


# --- results ---------------------------------------------------------------------------------

class Progress(NamedTuple):
    """What a one-image run's caller hears after each chunk of iterations."""

    iteration: int  # iterations done so far (in this call)
    image: np.ndarray  # the current image (host)
    terms: dict[str, float]  # loss_terms of the last point the optimiser evaluated
    history: list[float]  # total loss after each iteration of the chunk
    evaluations: int = 0  # objective evaluations so far


class BatchProgress(NamedTuple):
    """What a data-parallel batch's caller hears after each chunk of iterations."""

    iteration: int  # iterations done by the images still running (the most of any image)
    losses: list[float]  # each image's loss after its last iteration so far
    images: list[np.ndarray] | None = None  # each image now (host)
    iterations: list[int] | None = None  # each image's iterations done


class Result(NamedTuple):
    """The optimised image, its loss terms, the loss after every iteration, the number of
    objective evaluations, timings, and why the run stopped early (if it did).

    ``terms`` are the optimiser's: eq. 7 of the float image it ended at. ``delivered`` are
    those of the image a user receives, the rounding its file stores (8 or 16 bits per
    channel: :func:`jstyle.preprocessing.delivered`); with the pixels kept in the box the two agree
    to the rounding's effect. ``state``: after an interrupt, the solver's state (host
    arrays) to continue from with ``optimise(state=...)``; else None."""

    image: np.ndarray
    terms: dict[str, float]
    history: list[float]  # one value per iteration done
    evaluations: int  # objective-and-gradient evaluations, line searches included
    timings: dict[str, float]
    stopped: str | None = None  # None: all iterations ran
    delivered: dict[str, float] | None = None  # loss terms of the image as its file saves it
    evaluations_history: list[int] | None = None  # evaluations of each iteration
    state: Any = None  # the solver state of an interrupted run


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C, SIGTERM or :func:`request_stop`; ``results`` holds each
    problem's :class:`Result` at the last completed chunk (``result``: the first), its
    solver state included, so nothing is lost."""

    def __init__(self, results: Sequence[Result]) -> None:
        super().__init__("interrupted")
        self.results = list(results)

    @property
    def result(self) -> Result:
        return self.results[0]


def host_terms(terms) -> dict[str, float]:
    """Loss terms as plain floats."""
    return {k: float(v) for k, v in terms.items()}


def needs_final_evaluation(last: dict[str, float] | None, solver) -> bool:
    """Whether the final image's terms must be evaluated: no step reported any (``last`` is
    None), or the solver reports on the point a step started from (Adam)."""
    return last is None or not solver.reports_new_point


def nan_stop_reason(kept: int, terms: dict) -> str:
    """Why a run stopped after iteration ``kept``: the next one's loss was NaN or infinite,
    in the loss terms ``terms`` (of the rejected image) that are not finite."""
    bad = [k for k, v in terms.items() if not np.isfinite(float(v)) and k != "total"]
    return (f"the loss became NaN or infinite at iteration {kept + 1} (in: "
            f"{', '.join(bad) if bad else 'the gradient'}); kept the image of iteration {kept}")


def chunk_size(iterations: int) -> int:
    """Most iterations per compiled chunk: about 1/50 of the run, at most 20."""
    return max(1, min(20, iterations // 50))


# --- stopping at a chunk boundary --------------------------------------------------------------

class _Stop:
    depth = 0  # nested stoppable() scopes active
    requested = 0  # the signal number (or -1) of a stop asked for, 0 if none


def request_stop(signum: int = -1) -> None:
    """Ask the running transfer to stop at the end of its current chunk of iterations (it
    raises :class:`Interrupted`); outside a run, nothing happens."""
    if _Stop.depth:
        _Stop.requested = signum


def stop_requested() -> bool:
    """Whether a stop was asked for and has not been acted on yet."""
    return bool(_Stop.requested)


def running() -> bool:
    """Whether a transfer (or a caller's :func:`stoppable` scope) is running."""
    return _Stop.depth > 0


def check_stop() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was asked for (a chunk boundary)."""
    if _Stop.requested:
        _Stop.requested = 0
        raise KeyboardInterrupt


def _deferring_handler(signum, frame) -> None:
    request_stop(signum)


@contextlib.contextmanager
def stoppable() -> Iterator[None]:
    """A scope whose Ctrl-C is deferred to the next chunk boundary. Scopes nest (a caller
    running several transfers in a row holds one around them all). In the main thread,
    while Python's own SIGINT handler is installed, it is replaced by one that asks for the
    stop; a caller that installed its own handler (the command line) calls
    :func:`request_stop` from it."""
    swap = (_Stop.depth == 0 and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if swap:
        signal.signal(signal.SIGINT, _deferring_handler)
    if _Stop.depth == 0:
        _Stop.requested = 0
    _Stop.depth += 1
    try:
        yield
    finally:
        _Stop.depth -= 1
        if _Stop.depth == 0:
            _Stop.requested = 0
        if swap:
            signal.signal(signal.SIGINT, signal.default_int_handler)


# --- placing arrays on the mesh and reading them back (one host or several) ------------------

def make_mesh(axis: str, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``axis`` over ``devices`` (default: ``jax.devices()``, every
    process's), with automatic sharding propagation (XLA's partitioner decides the rest)."""
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh((len(devices),), (axis,), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=devices)


def one_device_mesh() -> Mesh:
    """The mesh of one run on one device: this process's first device."""
    return make_mesh(HEIGHT_AXIS, jax.local_devices()[:1])


def _put(value: Any, sharding: NamedSharding) -> Array:
    """A global array laid out by ``sharding`` from the same host value on every process."""
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _host(value: Array) -> np.ndarray:
    """The whole of a (possibly multi-host) global array, on this host."""
    if getattr(value, "is_fully_addressable", True):
        return np.asarray(value)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(value, tiled=True))


def _spec(shape: tuple[int, ...], axis: int | None, mesh: Mesh) -> NamedSharding:
    """Sharded on dimension ``axis`` (counted from the end if negative), else replicated."""
    parts: list[str | None] = [None] * len(shape)
    if axis is not None and -len(shape) <= axis < len(shape):
        parts[axis] = mesh.axis_names[0]
    return NamedSharding(mesh, P(*parts))


def _layout(tree: Any, mesh: Mesh, batched: bool, image_shape: tuple[int, ...]) -> Any:
    """Where each leaf of a solver state or of optimisation results lives: batched, every
    leaf on its leading (batch) axis; spatial, image-shaped leaves (and stacks of them) on
    their height axis, the rest replicated."""
    def place(leaf):
        shape = tuple(np.shape(leaf))
        if batched:
            return _spec(shape, 0 if shape else None, mesh)
        image_like = len(shape) >= 3 and shape[-3:] == tuple(image_shape)
        return _spec(shape, -3 if image_like else None, mesh)

    return jax.tree.map(place, tree)


def _constrain(tree: Any, mesh: Mesh, batched: bool, image_shape: tuple[int, ...]) -> Any:
    return jax.lax.with_sharding_constraint(tree, _layout(tree, mesh, batched, image_shape))


def _style_sharding(shape: tuple[int, ...], mesh: Mesh, batched: bool) -> NamedSharding:
    """Style images: sliced by rows like the image when they divide evenly (spatial), so no
    device holds a whole large style image's responses; else on every device."""
    if not batched and shape[-3] % mesh.size == 0:
        return _spec(shape, -3, mesh)
    return NamedSharding(mesh, P())


# --- the compiled programs -------------------------------------------------------------------

def _vmapped(fn: Callable, batched: bool) -> Callable:
    return jax.vmap(fn) if batched else fn


def _per_image(fn: Callable, mesh: Mesh, batched: bool) -> Callable:
    """``fn(image, state, *rest)`` of one problem, made to run a sharded batch of them: each
    device loops (``lax.map``) over its own slice of the batch. Not ``vmap``: batching the
    optimiser turns each ``lax.cond`` of its line search into a ``select`` whose operands,
    the network's weights among them, are broadcast to the batch: both branches evaluate
    the objective, with a copy of the weights per image, which XLA then gathers across
    devices. Measured with 4 photos: 1.7x slower on one device, 5.6x on four."""
    if not batched:
        return fn
    spec = P(mesh.axis_names[0])

    def local(*args):
        return jax.lax.map(lambda a: fn(*a), args)

    # check_vma off: the line searches mix per-device values with constants in their
    # conds, which the varying-axes type check refuses; nothing here communicates anyway.
    return jax.shard_map(local, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)


def _on_mesh(fn: Callable) -> Callable:
    """``fn`` traced under its spatial mesh (``jax.sharding.use_abstract_mesh``), so that
    tiled evaluation deals its tiles out over the devices (:func:`jstyle.tiling.scan`);
    a batch, whose photos are split instead, and one device are traced as they are."""
    @functools.wraps(fn)
    def traced(*args, mesh, batched, **kwargs):
        split = not batched and mesh.size > 1
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh) if split else \
                contextlib.nullcontext():
            return fn(*args, mesh=mesh, batched=batched, **kwargs)
    return traced


@functools.partial(jax.jit, static_argnames=("objective", "mesh", "batched"))
@_on_mesh
def _targets(params, contents, styles, blend, masks, weights, draw, *, objective, mesh, batched):
    # vmap is right here (no control flow): the style images' Gram matrices, which do not
    # depend on the photo, are computed once and broadcast. The weights are arguments, not
    # the (static) objective's: one program serves every weight setting.
    targets = _vmapped(lambda c, d: compute_targets(params, c, styles, objective, blend,
                                                    masks, d)._replace(weights=weights),
                       batched)(contents, draw)
    if batched:  # every leaf carries the batch axis
        return _constrain(targets, mesh, True, ())
    # Spatial: P^l in horizontal slices like the image, A^l (N x N) on every device.
    content = {k: jax.lax.with_sharding_constraint(v, _spec(v.shape, -3, mesh))
               for k, v in targets.content.items()}
    rest = jax.lax.with_sharding_constraint(targets._replace(content={}),
                                            NamedSharding(mesh, P()))
    return rest._replace(content=content)


@functools.partial(jax.jit, static_argnames=("objective", "mesh", "batched"))
@_on_mesh
def _terms(image, params, targets, *, objective, mesh, batched):
    return _vmapped(lambda x, t: loss_terms(x, params, t, objective), batched)(image, targets)


@functools.partial(jax.jit, static_argnames=("objective", "solver", "mesh", "batched"))
@_on_mesh
def _init_state(image, params, targets, *, objective, solver, mesh, batched):
    def one(x, t):
        return solver.init(lambda y: objective_and_terms(y, params, t, objective), x)

    image, state = _per_image(one, mesh, batched)(image, targets)
    return _constrain((image, state), mesh, batched, image.shape[-3:])


@functools.partial(jax.jit, static_argnames=("objective", "solver", "mesh", "batched"))
@_on_mesh
def _rebase_state(image, state, params, targets, *, objective, solver, mesh, batched):
    def one(x, s, t):
        return solver.rebase(lambda y: objective_and_terms(y, params, t, objective), x, s)

    state = _per_image(one, mesh, batched)(image, state, targets)
    return _constrain(state, mesh, batched, image.shape[-3:])


@functools.partial(jax.jit, static_argnames=("objective", "solver", "chunk", "mesh", "batched"),
                   donate_argnames=("image", "state"))
@_on_mesh
def _run_chunk(image, state, n, params, targets, *, objective, solver, chunk, mesh, batched):
    def one(x, s, count, t):
        fun = functools.partial(objective_and_terms, params=params, targets=t,
                                objective=objective)
        return run_steps(solver, fun, x, s, count, chunk)

    steps = _per_image(one, mesh, batched)(image, state, n, targets)
    return _constrain(steps, mesh, batched, image.shape[-3:])


#: Compiled optimisation chunks by input shapes and static settings, for this process.
_COMPILED: dict = {}


def _compiled_chunk(image, state, n, params, targets, *, solver, chunk, **static):
    """The compiled chunk for these shapes and settings; same-sized images (a batch run
    image by image, a sweep) reuse one."""
    key = (solver, chunk, *sorted(static.items()),
           jax.tree.structure((image, state, targets)),
           tuple((v.shape, str(v.dtype)) for v in jax.tree.leaves((image, state, targets))))
    run = _COMPILED.get(key)
    if run is None:
        if len(_COMPILED) >= 8:
            _COMPILED.pop(next(iter(_COMPILED)))  # the oldest
        run = _COMPILED[key] = programs.compiled(_run_chunk, image, state, n, params, targets,
                                                 solver=solver, chunk=chunk, **static)
    return run


def _call(fn: Callable, *args, **static):
    """``fn(*args, **static)``, its compiled program from :mod:`jstyle.programs` when that
    keeps programs (a warm start then traces nothing), else through ``jax.jit``'s cache."""
    if programs.folder() is None:
        return fn(*args, **static)
    return programs.compiled(fn, *args, **static)(*args)


def state_leaves(state: Any) -> tuple[list[np.ndarray], str]:
    """A host solver state as its leaves and a description of its structure (to check a
    saved state against the solver that is to continue from it)."""
    leaves, tree = jax.tree.flatten(state)
    return [np.asarray(v) for v in leaves], str(tree)


def state_template(params, content: np.ndarray, styles: Sequence[np.ndarray], blend, masks,
                   objective: Objective, solver: Solver) -> Any:
    """The shapes of ``solver``'s state on eq. 7 of ``content`` (traced, nothing computed)."""
    def init(image, styles):
        targets = compute_targets(params, image, styles, objective, blend, masks)
        return solver.init(lambda y: objective_and_terms(y, params, targets, objective),
                           image)[1]

    styles = [jax.ShapeDtypeStruct(np.shape(s), np.float32) for s in styles]
    return jax.eval_shape(init, jax.ShapeDtypeStruct(np.shape(content), np.float32), styles)


def state_from_leaves(template: Any, leaves: Sequence[np.ndarray], structure: str) -> Any:
    """The solver state :func:`state_leaves` took apart, in the structure of ``template``
    (:func:`state_template`); ValueError if it was another solver's or another size's."""
    expected, tree = jax.tree.flatten(template)
    if str(tree) != structure or len(leaves) != len(expected):
        raise ValueError("it holds the state of another optimiser or objective")
    for leaf, want in zip(leaves, expected, strict=True):
        if tuple(np.shape(leaf)) != tuple(want.shape):
            raise ValueError(f"it holds a state of shape {np.shape(leaf)} where this run's "
                             f"is {tuple(want.shape)}")
    return jax.tree.unflatten(tree, [np.asarray(v, w.dtype) for v, w in
                                     zip(leaves, expected, strict=True)])


# --- the loop ----------------------------------------------------------------------------------

class Report(NamedTuple):
    """What :func:`optimise` tells its caller after each chunk, for every problem."""

    histories: list[list[float]]  # each problem's losses so far (this call)
    images: np.ndarray  # (count, H, W, 3), host
    terms: Callable[[], list[dict[str, float]]]  # each problem's loss terms now
    evaluations: list[int]  # each problem's evaluations so far


def optimise(params, contents: np.ndarray, styles: Sequence[np.ndarray], blend, masks,
             init: np.ndarray, objective: Objective, solver: Solver, *,
             iterations: int | Sequence[int], mesh: Mesh, batched: bool,
             state: Any = None, offset: int | Sequence[int] = 0, save_every: int = 0,
             on_chunk: Callable[[Report], None] | None = None,
             delivered_bits: int = 8, redraw_every: int = 0) -> list[Result]:
    """Targets, compilation and the chunked optimisation of ``B`` problems: ``batched``,
    ``contents`` and ``init`` are ``(B, H, W, 3)`` sharded on the batch axis; else ``B = 1``,
    they are ``(H, W, 3)`` and their rows are sharded (a mesh of one device: a plain run).

    Args:
      params, contents, styles, blend, masks: the network and eq. 7's inputs (host arrays,
        placed on ``mesh`` here); ``masks``: spatial control, or None.
      init: the starting image(s), in [0, 1].
      objective, solver: eq. 7 and the optimiser.
      iterations: steps to make, for every problem or one count each (0: a problem that
        only fills the mesh, at no cost in the loop).
      state: a solver state (host arrays, batched like ``init``) to continue from, as an
        :class:`Interrupted` result carries it; None starts afresh (one evaluation).
      offset: iterations made before this call (per problem or for all), so that chunks
        end on every multiple of ``save_every`` (if > 0) counted from the run's start.
      on_chunk: called with a :class:`Report` after each chunk.
      delivered_bits: bits per channel of the file the image is saved as (its config's
        ``image_bits``): each result's ``delivered`` terms are of that quantisation.

    Returns one :class:`Result` per problem. A loss or image that becomes NaN or infinite
    stops that problem: its result keeps the last finite image, and ``stopped`` says why.
    A stop asked for (Ctrl-C in a :func:`stoppable` scope, :func:`request_stop`) raises
    :class:`Interrupted` at the next chunk boundary.
    """
    with stoppable():
        return _optimise(params, contents, styles, blend, masks, init, objective, solver,
                         iterations, mesh, batched, state, offset, save_every, on_chunk,
                         delivered_bits, redraw_every)


def _optimise(params, contents, styles, blend, masks, init, objective, solver, iterations,
              mesh, batched, state, offset, save_every, on_chunk,
              delivered_bits=8, redraw_every=0) -> list[Result]:
    t0 = time.perf_counter()
    if not batched and mesh.size > 1:
        solver = for_spatial_split(solver)
    image_shape = init.shape
    count = init.shape[0] if batched else 1
    budget = np.broadcast_to(np.asarray(iterations, np.int64), (count,)).copy()
    offset = np.broadcast_to(np.asarray(offset, np.int64), (count,)).copy()
    axis = 0 if batched else -3
    replicated = NamedSharding(mesh, P())
    # Compiled for the objective's layers; its weights come in as data (Targets.weights).
    static = {"objective": objective.program(), "mesh": mesh, "batched": batched}
    weights = {k: np.float32(v) for k, v in objective.weights().items()}

    histories: list[list[float]] = [[] for _ in range(count)]
    per_step: list[list[int]] = [[] for _ in range(count)]  # evaluations of each iteration
    stopped: list[str | None] = [None] * count
    last: list[dict[str, float] | None] = [None] * count  # terms each last step reported
    saved = np.asarray(init, np.float32).reshape((count, *image_shape[-3:]))
    evaluations = np.zeros(count, np.int64)
    timing = {"targets": t0, "compiled": t0}
    placed: dict[str, Any] = {}

    def evaluate(images: np.ndarray) -> list[dict[str, float]]:
        values = _call(_terms, _put(images if batched else images[0],
                                    _spec(image_shape, axis, mesh)),
                       placed["params"], placed["targets"], **static)
        values = {k: _host(v).reshape(count) for k, v in values.items()}
        return [{k: float(v[i]) for k, v in values.items()} for i in range(count)]

    def current_terms(images: np.ndarray) -> list[dict[str, float]]:
        """Each problem's terms: those its last step reported, else evaluated now."""
        if all(t is not None for t in last):
            return list(last)
        fresh = evaluate(images)
        return [f if t is None else t for t, f in zip(last, fresh, strict=True)]

    def results(interrupted: bool = False) -> list[Result]:
        if "targets" not in placed:  # stopped before the targets existed: nothing evaluated
            terms = received = [dict.fromkeys(("total", "content", "style", "tv"),
                                              float("nan"))] * count
        else:
            stale = [needs_final_evaluation(t, solver) for t in last]
            fresh = evaluate(saved) if any(stale) else list(last)  # one pass serves all
            terms = [f if s else t for s, f, t in zip(stale, fresh, last, strict=True)]
            received = evaluate(delivered(saved, delivered_bits))
        states = [None] * count
        if interrupted and "state" in placed:
            try:
                host = jax.tree.map(_host, placed["state"])
            except RuntimeError:  # donated to a chunk that was interrupted: not resumable
                host = None
            if host is not None:
                states = [jax.tree.map(lambda v, i=i: v[i], host) for i in range(count)] \
                    if batched else [host]
        t_end = time.perf_counter()
        elapsed = t_end - timing["compiled"]
        return [Result(saved[i], terms[i], histories[i], int(evaluations[i]),
                       {"setup_s": timing["targets"] - t0,
                        "compile_s": timing["compiled"] - timing["targets"],
                        "optimize_s": elapsed,
                        "iterations_per_s": len(histories[i]) / max(elapsed, 1e-9)},
                       stopped[i], received[i], per_step[i], states[i])
                for i in range(count)]

    try:
        params = placed["params"] = jax.tree.map(lambda p: _put(p, replicated),
                                                 network_params(params, objective))
        contents = _put(contents, _spec(contents.shape, axis, mesh))
        styles = [_put(s, _style_sharding(s.shape, mesh, batched)) for s in styles]
        blend = None if blend is None else _put(np.asarray(blend, np.float32), replicated)
        masks = None if masks is None else _put(np.asarray(masks, np.float32), replicated)
        image = _put(saved.reshape(image_shape), _spec(image_shape, axis, mesh))
        weights = {k: _put(v, replicated) for k, v in weights.items()}
        # which draw of the style losses' projections and samples each problem is on
        drawn = offset // redraw_every if redraw_every else np.zeros(count, np.int64)

        def draws() -> Array:
            return _put(drawn.astype(np.int32) if batched else np.int32(drawn[0]),
                        _spec((count,), 0, mesh) if batched else replicated)

        targets = _call(_targets, params, contents, styles, blend, masks, weights, draws(),
                        **static)
        if state is None:
            image, state = _call(_init_state, image, params, targets, solver=solver, **static)
            evaluations += solver.init_evaluations
        else:
            state = jax.tree.map(lambda v, s: _put(v, s), state,
                                 _layout(state, mesh, batched, image_shape[-3:]))
        jax.block_until_ready((targets, state))
        placed["targets"], placed["state"] = targets, state
        timing["targets"] = timing["compiled"] = time.perf_counter()
        check_stop()

        chunk = chunk_size(int(budget.max()))
        n_sharding = _spec((count,), 0, mesh) if batched else replicated

        def counts(values: np.ndarray) -> Array:
            return _put(values.astype(np.int32) if batched else np.int32(values[0]), n_sharding)

        run = _compiled_chunk(image, state, counts(np.zeros(count)), params, targets,
                              solver=solver, chunk=chunk, **static)
        timing["compiled"] = time.perf_counter()
        check_stop()

        while True:
            done = np.array([len(h) for h in histories])
            todo = np.where([s is None for s in stopped], np.minimum(chunk, budget - done), 0)
            if save_every:  # chunks end on every multiple of save_every, from the run's start
                todo = np.minimum(todo, save_every - (offset + done) % save_every)
            if redraw_every:  # and on every multiple of redraw_every
                todo = np.minimum(todo, redraw_every - (offset + done) % redraw_every)
            if not todo.any():
                break
            steps = run(image, state, counts(todo), params, targets)
            image, state = steps.x, steps.state
            placed["state"] = state
            failed = _host(steps.failed_at).reshape(count)
            values = _host(steps.history).reshape(count, chunk)
            spent = _host(steps.evaluations).reshape(count, chunk)
            saved = _host(image).reshape(saved.shape)
            reported = {k: _host(v).reshape(count) for k, v in steps.terms.items()}
            taken = np.where(failed < 0, todo, failed)
            bad = None
            for i in np.flatnonzero(failed >= 0):
                if bad is None:
                    bad = {k: _host(v).reshape(count) for k, v in steps.rejected_terms.items()}
                stopped[i] = nan_stop_reason(int(offset[i]) + len(histories[i]) + int(failed[i]),
                                             {k: v[i] for k, v in bad.items()})
            for i in range(count):
                histories[i] += values[i, :taken[i]].tolist()
                per_step[i] += spent[i, :taken[i]].tolist()
                if taken[i]:
                    last[i] = {k: float(v[i]) for k, v in reported.items()}
            evaluations += spent.sum(axis=1)
            done = np.array([len(h) for h in histories])
            going = np.array([s is None for s in stopped]) & (done < budget)
            if redraw_every and (going & ((offset + done) // redraw_every > drawn)).any():
                # the style losses' projections and samples drawn afresh: new targets, and
                # the solver re-based on them (Heitz et al.: a new L-BFGS run per draw)
                drawn = np.where(going, (offset + done) // redraw_every, drawn)
                targets = placed["targets"] = _call(_targets, params, contents, styles, blend,
                                                    masks, weights, draws(), **static)
                state = placed["state"] = _call(_rebase_state, image, state, params, targets,
                                                solver=solver, **static)
                evaluations += np.where(going, solver.init_evaluations, 0)
            if on_chunk is not None:
                on_chunk(Report(histories, saved,
                                functools.partial(current_terms, saved),
                                evaluations.tolist()))
            check_stop()
    except KeyboardInterrupt:
        for i in range(count):
            stopped[i] = stopped[i] or \
                f"interrupted after iteration {int(offset[i]) + len(histories[i])}"
        raise Interrupted(results(interrupted=True)) from None
    return results()
