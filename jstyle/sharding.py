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
  order of floating-point sums. With exact tiled evaluation (``Objective.tile``), the
  tiles are dealt out over the same axis instead (:func:`jstyle.tiling.scan`): each
  device runs the network on its own run of tiles and the sums are added over the
  devices, so each holds one crop's network.

Both run through the same host loop as a one-device run (:func:`jstyle.engine.optimise`:
chunks, progress, the non-finite stop, interrupts, resume), return its :class:`Result`, and
run unchanged on one host or several: the mesh spans ``jax.devices()``, which after
:func:`initialize_distributed` are every process's devices. Every process runs the
same program on the same inputs (the SPMD model); each gets every result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import engine, transfer
from jstyle.distributed import (  # noqa: F401 - re-exported
    COORDINATOR_ENV,
    NUM_PROCESSES_ENV,
    PROCESS_ID_ENV,
    initialize_distributed,
)
from jstyle.engine import BatchProgress, Interrupted, Progress, Result, make_mesh
from jstyle.errors import JStyleError
from jstyle.layers import deepest, downsampling
from jstyle.objective import Objective
from jstyle.optimize import Solver
from jstyle.options import BATCH_AXIS, HEIGHT_AXIS, NOISE_AMPLITUDE, SHARDING_MODES
from jstyle.transfer import initial_image

__all__ = ["BATCH_AXIS", "HEIGHT_AXIS", "MODES", "BatchProgress", "check_spatial",
           "initialize_distributed", "make_mesh", "stylize_batch", "stylize_spatial"]

#: The ways to run over several devices (none, batch, spatial).
MODES = SHARDING_MODES


#: A batch's interrupt: :class:`jstyle.engine.Interrupted`, whose ``results`` hold every photo's.
BatchInterrupted = Interrupted

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
    mesh: Any = None,
    save_every: int = 0,
    states: Sequence[Any] | None = None,
    offsets: Sequence[int] | None = None,
    on_progress: Callable[[BatchProgress], None] | None = None,
    delivered_bits: int = 8,
    redraw_every: int = 0,
) -> list[Result]:
    """:func:`jstyle.transfer.stylize` for each of ``contents``, the batch sharded over devices.

    Args:
      contents: ``B`` same-sized RGB photos in [0, 1], ``(B, H, W, 3)`` or a list of them.
      styles, objective, solver, iterations, seed, style_blend, save_every, delivered_bits,
        redraw_every: as for ``stylize``, shared by every photo; the white-noise start
        uses ``seed`` for every photo, as a batch run of the command line does.
      init: ``"noise"``, ``"content"``, ``"style"``, or images ``(B, H, W, 3)``.
      mesh: a one-axis mesh (default: :func:`make_mesh` over every device, axis ``"batch"``).
      states, offsets: continue an interrupted batch: each photo's solver state (its
        :class:`Interrupted` result's) and iterations made; ``init`` holds their images.
        ``iterations`` is the run's total: photo i makes ``iterations - offsets[i]`` more.

    Each photo is its own problem (its own L-BFGS state and line searches); the result of
    photo i equals ``stylize`` on photo i alone, up to floating-point rounding. ``B`` need
    not be a multiple of the device count: the batch is padded by repeating its last photo
    (given no iterations, its result dropped). Returns one :class:`Result` per photo;
    Ctrl-C raises :class:`jstyle.engine.Interrupted` carrying them.
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
    offsets = np.zeros(count, np.int64) if offsets is None else np.asarray(offsets, np.int64)
    budget = np.maximum(iterations - offsets, 0)
    state = None
    if states is not None:
        if any(st is None for st in states):
            raise ValueError("continuing a batch needs every photo's solver state")
        states = list(states) + [states[-1]] * padded
        state = jax.tree.map(lambda *leaves: np.stack(leaves), *states)
    if padded:
        stack = np.concatenate([stack, np.repeat(stack[-1:], padded, axis=0)])
        start = np.concatenate([start, np.repeat(start[-1:], padded, axis=0)])
        budget = np.concatenate([budget, np.zeros(padded, np.int64)])
        offsets = np.concatenate([offsets, np.repeat(offsets[-1:], padded)])

    def on_chunk(report: engine.Report) -> None:
        if on_progress is not None:
            real = report.histories[:count]
            on_progress(BatchProgress(
                max(len(h) + int(o) for h, o in zip(real, offsets, strict=False)),
                [h[-1] if h else float("nan") for h in real],
                list(report.images[:count]), [len(h) + int(o) for h, o in
                                              zip(real, offsets, strict=False)]))

    try:
        results = engine.optimise(params, stack, styles, style_blend, None, start, objective,
                                  solver, iterations=budget, mesh=mesh, batched=True,
                                  state=state, offset=offsets, save_every=save_every,
                                  on_chunk=on_chunk, delivered_bits=delivered_bits,
                                  redraw_every=redraw_every)
    except Interrupted as stop:  # the padding's results dropped
        raise Interrupted(stop.results[:count]) from None
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
    state: Any = None,
    offset: int = 0,
    on_progress: Callable[[Progress], None] | None = None,
    mesh: Any = None,
    delivered_bits: int = 8,
    redraw_every: int = 0,
) -> Result:
    """:func:`jstyle.transfer.stylize` on one image whose rows are split over devices.

    Arguments and result as for ``stylize`` (``delivered_bits`` among them; ``on_progress`` hears a
    :class:`jstyle.transfer.Progress` after each chunk; Ctrl-C raises
    :class:`jstyle.engine.Interrupted`, carrying the solver state to continue from with
    ``state`` and ``offset``); ``mesh``: a one-axis mesh (default:
    :func:`make_mesh` over every device, axis ``"height"``). The content's height must be
    a multiple of the device count times the deepest layer's downsampling
    (:func:`check_spatial`).
    """
    mesh = mesh or make_mesh(HEIGHT_AXIS)
    check_spatial(np.shape(content)[0], objective, mesh.size)
    return transfer.stylize(params, content, styles, objective, solver, iterations=iterations,
                            init=init, seed=seed, noise_amplitude=noise_amplitude,
                            style_blend=style_blend, save_every=save_every, state=state,
                            offset=offset, on_progress=on_progress, mesh=mesh,
                            delivered_bits=delivered_bits, redraw_every=redraw_every)
