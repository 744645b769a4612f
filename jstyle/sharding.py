"""Style transfer over several devices with JAX's own SPMD (``jax.sharding``, ``jax.distributed``).

Two ways to spread the work over a one-axis device mesh, both written as one program
for all devices that XLA's partitioner splits (no hand-written communication):

- **data parallel** (:func:`stylize_batch`): a batch of same-sized content photos, each
  its own optimisation problem (its own L-BFGS history and line searches, never one
  L-BFGS on a summed loss), with the batch axis sharded over the mesh axis ``"batch"``:
  ``jax.shard_map`` gives each device its slice of the batch, which it optimises photo
  by photo (``lax.map``; see :func:`_per_image` for why not ``vmap``). A batch that is not a
  multiple of the device count is padded by repeating its last photo, which is given no
  iterations; the padding's results are dropped.
- **spatial** (:func:`stylize_spatial`): one large image whose height axis is sharded
  over the mesh axis ``"height"``: the image, the L-BFGS state (its history of image-
  sized vectors) and the content targets P^l live in horizontal slices, one per
  device; the Gram targets A^l (N x N) are replicated. XLA adds the halo exchange that
  each 3x3 convolution needs at the slices' borders and the all-reduce of each Gram
  matrix's sum over positions (eq. 3), so the loss is the single-device loss up to the
  order of floating-point sums.

Both mirror :func:`jstyle.transfer.stylize` (same arguments, its :class:`Result`), and
run unchanged on one host or several: the mesh spans ``jax.devices()``, which after
:func:`initialize_distributed` are every process's devices. Every process runs the
same program on the same inputs (the SPMD model); each gets every result.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jstyle.errors import JStyleError
from jstyle.layers import deepest, downsampling
from jstyle.objective import Objective, compute_targets, loss_terms, objective_and_terms
from jstyle.optimize import Solver, run_steps
from jstyle.options import SHARDING_MODES
from jstyle.preprocessing import delivered
from jstyle.transfer import (
    NOISE_AMPLITUDE,
    Interrupted,
    Progress,
    Result,
    chunk_size,
    initial_image,
    nan_stop_reason,
    needs_final_evaluation,
)

Array = jax.Array

#: The ways to run over several devices (none, batch, spatial).
MODES = SHARDING_MODES

#: Mesh axis of data parallelism (a batch of photos) and of spatial sharding (image rows).
BATCH_AXIS = "batch"
HEIGHT_AXIS = "height"

#: Environment variables of a multi-host run (see :func:`initialize_distributed`).
COORDINATOR_ENV = "JSTYLE_COORDINATOR"
NUM_PROCESSES_ENV = "JSTYLE_NUM_PROCESSES"
PROCESS_ID_ENV = "JSTYLE_PROCESS_ID"


def initialize_distributed(environ: Mapping[str, str] | None = None) -> bool:
    """Join a multi-host run when ``JSTYLE_COORDINATOR`` is set; must precede any JAX work.

    ``JSTYLE_COORDINATOR=host:port`` (process 0's address, a free port),
    ``JSTYLE_NUM_PROCESSES`` and ``JSTYLE_PROCESS_ID`` (0 .. n-1) are passed on to
    ``jax.distributed.initialize``, after which ``jax.devices()`` lists every process's
    devices. Returns whether it initialised; without ``JSTYLE_COORDINATOR`` nothing
    happens (a single host), and on clusters that JAX detects itself (Slurm, Open MPI,
    Cloud TPU) calling ``jax.distributed.initialize()`` directly is enough.
    """
    env = os.environ if environ is None else environ
    coordinator = env.get(COORDINATOR_ENV)
    if not coordinator:
        return False
    missing = [k for k in (NUM_PROCESSES_ENV, PROCESS_ID_ENV) if not env.get(k)]
    if missing:
        raise JStyleError(f"{COORDINATOR_ENV} is set but {' and '.join(missing)} not; set "
                          f"{NUM_PROCESSES_ENV} (the number of hosts) and {PROCESS_ID_ENV} "
                          "(0 .. number - 1) on every host")
    try:
        count, index = int(env[NUM_PROCESSES_ENV]), int(env[PROCESS_ID_ENV])
    except ValueError:
        raise JStyleError(f"{NUM_PROCESSES_ENV} and {PROCESS_ID_ENV} must be whole numbers, "
                          f"not {env[NUM_PROCESSES_ENV]!r} and {env[PROCESS_ID_ENV]!r}") from None
    if not 0 <= index < count:
        raise JStyleError(f"{PROCESS_ID_ENV}={index} is out of range for {NUM_PROCESSES_ENV}="
                          f"{count}; number the hosts 0 .. {count - 1}")
    jax.distributed.initialize(coordinator, num_processes=count, process_id=index)
    return True


def make_mesh(axis: str, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``axis`` over ``devices`` (default: ``jax.devices()``, every
    process's), with automatic sharding propagation (XLA's partitioner decides the rest)."""
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh((len(devices),), (axis,), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=devices)


def mesh_info(mesh: Mesh) -> dict[str, Any]:
    """What a run's record says of its mesh: axis, device and process counts, platform."""
    devices = list(mesh.devices.flat)
    return {"axis": mesh.axis_names[0], "devices": len(devices),
            "processes": len({d.process_index for d in devices}),
            "platform": devices[0].platform, "device_kind": devices[0].device_kind}


# --- placing arrays on the mesh and reading them back (one host or several) ---------------

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


# --- the compiled programs -----------------------------------------------------------------

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


@functools.partial(jax.jit, static_argnames=("objective", "mesh", "batched"))
def _targets(params, contents, styles, blend, *, objective, mesh, batched):
    # vmap is right here (no control flow): the style images' Gram matrices, which do not
    # depend on the photo, are computed once and broadcast.
    targets = _vmapped(lambda c: compute_targets(params, c, styles, objective, blend),
                       batched)(contents)
    if batched:  # every leaf carries the batch axis
        return _constrain(targets, mesh, True, ())
    # Spatial: P^l in horizontal slices like the image, A^l (N x N) on every device.
    content = {k: jax.lax.with_sharding_constraint(v, _spec(v.shape, -3, mesh))
               for k, v in targets.content.items()}
    rest = jax.lax.with_sharding_constraint(targets._replace(content={}),
                                            NamedSharding(mesh, P()))
    return rest._replace(content=content)


@functools.partial(jax.jit, static_argnames=("objective", "mesh", "batched"))
def _terms(image, params, targets, *, objective, mesh, batched):
    return _vmapped(lambda x, t: loss_terms(x, params, t, objective), batched)(image, targets)


@functools.partial(jax.jit, static_argnames=("objective", "solver", "mesh", "batched"))
def _init_state(image, params, targets, *, objective, solver, mesh, batched):
    def one(x, t):
        return solver.init(lambda y: objective_and_terms(y, params, t, objective), x)

    image, state = _per_image(one, mesh, batched)(image, targets)
    return _constrain((image, state), mesh, batched, image.shape[-3:])


@functools.partial(jax.jit, static_argnames=("objective", "solver", "chunk", "mesh", "batched"),
                   donate_argnames=("image", "state"))
def _run_chunk(image, state, n, params, targets, *, objective, solver, chunk, mesh, batched):
    def one(x, s, count, t):
        fun = functools.partial(objective_and_terms, params=params, targets=t,
                                objective=objective)
        return run_steps(solver, fun, x, s, count, chunk)

    steps = _per_image(one, mesh, batched)(image, state, n, targets)
    return _constrain(steps, mesh, batched, image.shape[-3:])


# --- the host loop shared by both layouts ----------------------------------------------------

class BatchProgress(NamedTuple):
    """What :func:`stylize_batch`'s caller hears after each chunk of iterations."""

    iteration: int  # iterations done by the images still running (the most of any image)
    losses: list[float]  # each image's loss after its last iteration so far


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`stylize_batch`; ``results`` holds each image's last completed
    chunk, as :class:`jstyle.transfer.Interrupted` does for one image."""

    def __init__(self, results: list[Result]) -> None:
        super().__init__("interrupted")
        self.results = results


def _optimise(params, contents, styles, blend, init, objective, solver, iterations, mesh,
              batched, on_chunk, padding: int = 0, save_every: int = 0) -> list[Result]:
    """Targets, compilation and the chunked optimisation of ``B`` problems (``batched``:
    ``contents`` is ``(B, H, W, 3)``; spatial: ``B = 1`` and ``contents`` is ``(H, W, 3)``).
    Inputs are host arrays laid out on ``mesh`` here. The last ``padding`` problems only fill
    the mesh: they are given no iterations, so they cost nothing in the loop. Chunks end on
    every multiple of ``save_every`` (if > 0). ``on_chunk(histories, images, terms)`` is
    called after each chunk; ``terms()`` gives every problem's loss terms there (those its last
    step reported)."""
    t0 = time.perf_counter()
    image_shape = init.shape
    axis = 0 if batched else -3
    replicated = NamedSharding(mesh, P())
    params = jax.tree.map(lambda p: _put(p, replicated), params)
    contents = _put(contents, _spec(contents.shape, axis, mesh))
    styles = [_put(s, _style_sharding(s.shape, mesh, batched)) for s in styles]
    blend = None if blend is None else _put(np.asarray(blend, np.float32), replicated)
    image = _put(init, _spec(init.shape, axis, mesh))
    static = {"objective": objective, "mesh": mesh, "batched": batched}
    targets = _targets(params, contents, styles, blend, **static)
    image, state = _init_state(image, params, targets, solver=solver, **static)
    jax.block_until_ready((targets, state))
    t_targets = time.perf_counter()

    count = init.shape[0] if batched else 1
    chunk = chunk_size(iterations)
    n_sharding = _spec((count,), 0, mesh) if batched else replicated

    def counts(values: np.ndarray) -> Array:
        return _put(values.astype(np.int32) if batched else np.int32(values[0]), n_sharding)

    run = _run_chunk.lower(image, state, counts(np.zeros(count)), params, targets,
                           solver=solver, chunk=chunk, **static).compile()
    t_compiled = time.perf_counter()

    histories: list[list[float]] = [[] for _ in range(count)]
    per_step: list[list[int]] = [[] for _ in range(count)]  # evaluations of each iteration
    evaluations = np.full(count, solver.init_evaluations, np.int64)
    stopped: list[str | None] = [None] * (count - padding) + ["padding"] * padding
    saved = _host(image).reshape((count, *image_shape[-3:]))
    last: list[dict[str, float] | None] = [None] * count  # terms each last step reported

    def evaluate(images: np.ndarray) -> list[dict[str, float]]:
        values = _terms(_put(images if batched else images[0], _spec(image_shape, axis, mesh)),
                        params, targets, **static)
        values = {k: _host(v).reshape(count) for k, v in values.items()}
        return [{k: float(v[i]) for k, v in values.items()} for i in range(count)]

    def results() -> list[Result]:
        stale = [needs_final_evaluation(t, solver) for t in last]
        fresh = evaluate(saved) if any(stale) else None  # one pass serves every image
        received = evaluate(delivered(saved))
        t_end = time.perf_counter()
        out = []
        for i in range(count):
            timings = {"setup_s": t_targets - t0, "compile_s": t_compiled - t_targets,
                       "optimize_s": t_end - t_compiled,
                       "iterations_per_s": len(histories[i]) / max(t_end - t_compiled, 1e-9)}
            terms = fresh[i] if stale[i] else last[i]
            out.append(Result(saved[i], terms, histories[i], int(evaluations[i]), timings,
                              stopped[i], received[i], per_step[i]))
        return out

    try:
        while True:
            done = np.array([len(h) for h in histories])
            todo = np.where([s is None for s in stopped], np.minimum(chunk, iterations - done), 0)
            if save_every:
                todo = np.minimum(todo, save_every - done % save_every)
            if not todo.any():
                break
            steps = run(image, state, counts(todo), params, targets)
            image, state = steps.x, steps.state
            failed = _host(steps.failed_at).reshape(count)
            values = _host(steps.history).reshape(count, chunk)
            spent = _host(steps.evaluations).reshape(count, chunk)
            host_image = _host(image).reshape(saved.shape)
            reported = {k: _host(v).reshape(count) for k, v in steps.terms.items()}
            now_stopped, bad_terms = list(stopped), None
            for i in np.flatnonzero(failed >= 0):
                if bad_terms is None:
                    bad_terms = {k: _host(v).reshape(count)
                                 for k, v in steps.rejected_terms.items()}
                now_stopped[i] = nan_stop_reason(len(histories[i]) + int(failed[i]),
                                                 {k: v[i] for k, v in bad_terms.items()})
            taken = np.where(failed < 0, todo, failed)
            now_last = [{k: float(v[i]) for k, v in reported.items()} if taken[i] else last[i]
                        for i in range(count)]
            # All at once, so that an interrupt sees each image with its own history.
            histories, per_step, evaluations, stopped, saved, last = (
                [h + values[i, :taken[i]].tolist() for i, h in enumerate(histories)],
                [c + spent[i, :taken[i]].tolist() for i, c in enumerate(per_step)],
                evaluations + spent.sum(axis=1), now_stopped, host_image, now_last)
            on_chunk(histories, saved,
                     lambda last=last, saved=saved:
                     last if all(t is not None for t in last) else evaluate(saved))
    except KeyboardInterrupt:
        for i in range(count):
            stopped[i] = stopped[i] or f"interrupted after iteration {len(histories[i])}"
        raise BatchInterrupted(results()) from None
    return results()


def _style_sharding(shape: tuple[int, ...], mesh: Mesh, batched: bool) -> NamedSharding:
    """Style images: sliced by rows like the image when they divide evenly (spatial), so no
    device holds a whole large style image's responses; else on every device."""
    if not batched and shape[-3] % mesh.size == 0:
        return _spec(shape, -3, mesh)
    return NamedSharding(mesh, P())


# --- the two entry points -----------------------------------------------------------------

def _host_init(init: str | np.ndarray, content: np.ndarray, style: np.ndarray,
               seed: int, noise_amplitude: float) -> np.ndarray:
    return np.asarray(initial_image(init, jnp.asarray(content), jnp.asarray(style), seed,
                                    noise_amplitude))


def stylize_batch(
    params: dict,
    contents: np.ndarray | Sequence[np.ndarray],
    styles: Sequence[np.ndarray],
    objective: Objective,
    solver: Solver,
    *,
    iterations: int,
    init: str | np.ndarray = "noise",
    seed: int = 0,
    noise_amplitude: float = NOISE_AMPLITUDE,
    style_blend: Sequence[float] | None = None,
    mesh: Mesh | None = None,
    on_progress: Callable[[BatchProgress], None] | None = None,
) -> list[Result]:
    """:func:`jstyle.transfer.stylize` for each of ``contents``, the batch sharded over devices.

    Args:
      contents: ``B`` same-sized RGB photos in [0, 1], ``(B, H, W, 3)`` or a list of them.
      styles, objective, solver, iterations, seed, style_blend: as for ``stylize``, shared
        by every photo; the white-noise start uses ``seed`` for every photo, as a batch run
        of the command line does.
      init: ``"noise"``, ``"content"``, ``"style"``, or images ``(B, H, W, 3)``.
      mesh: a one-axis mesh (default: :func:`make_mesh` over every device, axis ``"batch"``).

    Each photo is its own problem (its own L-BFGS state and line searches); the result of
    photo i equals ``stylize`` on photo i alone, up to floating-point rounding. ``B`` need
    not be a multiple of the device count: the batch is padded by repeating its last photo
    (given no iterations, its result dropped). Returns one :class:`Result` per photo;
    Ctrl-C raises :class:`BatchInterrupted` carrying them.
    """
    shapes = {np.shape(c) for c in contents}
    if len(shapes) != 1:
        raise JStyleError(f"a data-parallel batch needs same-sized content images, got sizes "
                          f"{sorted(s[:2] for s in shapes)}; resize them to one size first")
    stack = np.stack([np.asarray(c, np.float32) for c in contents])
    mesh = mesh or make_mesh(BATCH_AXIS)
    count = len(stack)
    padded = -count % mesh.size
    styles = [np.asarray(s, np.float32) for s in styles]
    if isinstance(init, str):
        start = np.stack([_host_init(init, c, styles[0], seed, noise_amplitude) for c in stack])
    else:
        start = np.asarray(init, np.float32)
        if start.shape != stack.shape:
            raise JStyleError(f"init images have shape {start.shape}, expected {stack.shape}")
    if padded:
        stack = np.concatenate([stack, np.repeat(stack[-1:], padded, axis=0)])
        start = np.concatenate([start, np.repeat(start[-1:], padded, axis=0)])

    def on_chunk(histories, images, terms):
        if on_progress is not None:
            real = histories[:count]
            on_progress(BatchProgress(max(len(h) for h in real),
                                      [h[-1] if h else float("nan") for h in real]))

    try:
        results = _optimise(params, stack, styles, style_blend, start, objective, solver,
                            iterations, mesh, True, on_chunk, padded)
    except BatchInterrupted as stop:  # the padding's results dropped
        raise BatchInterrupted(stop.results[:count]) from None
    return results[:count]


def check_spatial(height: int, objective: Objective, devices: int) -> None:
    """A :class:`JStyleError` unless ``height`` splits evenly into ``devices`` slices at every
    layer the objective reads (the deepest layer is 2^k times smaller than the image)."""
    name = deepest(objective.layers)
    factor = downsampling(name)
    step = devices * factor
    if height % step:
        below, above = height // step * step, (height // step + 1) * step
        sizes = f"{below} or {above}" if below else f"{above}"
        raise JStyleError(
            f"spatial sharding over {devices} devices needs an image height that is a multiple "
            f"of {devices} x {factor} = {step} ({name} is {factor}x smaller than the image), "
            f"not {height}; resize the content to {sizes} px high, or use fewer devices")


def stylize_spatial(
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
    save_every: int = 0,
    on_progress: Callable[[Progress], None] | None = None,
    mesh: Mesh | None = None,
) -> Result:
    """:func:`jstyle.transfer.stylize` on one image whose rows are split over devices.

    Arguments and result as for ``stylize`` (``on_progress`` hears a
    :class:`jstyle.transfer.Progress` after each chunk, its image a host array; Ctrl-C
    raises :class:`jstyle.transfer.Interrupted`); ``mesh``: a one-axis mesh (default:
    :func:`make_mesh` over every device, axis ``"height"``). The content's height must be
    a multiple of the device count times the deepest layer's downsampling
    (:func:`check_spatial`).
    """
    mesh = mesh or make_mesh(HEIGHT_AXIS)
    content = np.asarray(content, np.float32)
    check_spatial(content.shape[0], objective, mesh.size)
    styles = [np.asarray(s, np.float32) for s in styles]
    start = _host_init(init, content, styles[0], seed, noise_amplitude)
    reported = [0]  # iterations already reported

    def on_chunk(histories, images, terms):
        history = histories[0]
        if on_progress is not None:
            on_progress(Progress(len(history), images[0], terms()[0], history[reported[0]:]))
        reported[0] = len(history)

    try:
        (result,) = _optimise(params, content, styles, style_blend, start, objective, solver,
                              iterations, mesh, False, on_chunk, save_every=save_every)
    except BatchInterrupted as stop:
        raise Interrupted(stop.results[0]) from None
    return result
