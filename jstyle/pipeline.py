"""A run as a config describes it, on sized inputs: colour preservation, then each phase
-- Gatys et al. 2017's coarse-to-fine stages, then the full size -- through the engine.

Shared by the command line (:mod:`jstyle.run`), the figures (:mod:`jstyle.figures`) and
the Python API (:func:`jstyle.api.stylize`). Every phase is run, stopped and interrupted
in one place, :func:`run_transfer`: a phase that is interrupted (Ctrl-C, SIGTERM) or meets
a non-finite loss ends the run there, and the :class:`Outcome` says which phase it was and
carries a :class:`ResumePoint` -- the phase, its image, the solver state (the L-BFGS
history included) and its iterations -- from which ``run_transfer(resume=...)`` continues
exactly where it stopped.

References:
  Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks",
  CVPR 2016 (eq. 7).
  Gatys, Ecker, Bethge, Hertzmann & Shechtman, "Controlling Perceptual Factors in Neural
  Style Transfer", CVPR 2017 (coarse-to-fine, sec. 5).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from jstyle.config import Config
from jstyle.options import TILE_AUTO

__all__ = ["Phase", "ResumePoint", "Outcome", "phases", "objective_and_solver",
    "load_cached_weights", "balanced_content_weight", "run_transfer", "state_template"]


class Phase(NamedTuple):
    """One optimisation of a run, at one size."""

    index: int  # 0 .. len(coarse_sizes): coarse stages first, the full size last
    name: str  # "coarse stage 1/2" or "full size"
    size: int  # longest side in pixels
    height: int
    width: int
    iterations: int
    content_weight: float  # alpha, scaled to the phase's pixel count (see phases())

    @property
    def coarse(self) -> bool:
        return self.name != "full size"


class ResumePoint(NamedTuple):
    """Where a stopped run continues: phase ``phase`` after ``done`` of its iterations, from
    ``image`` (at the phase's size, in the colours optimised) and the solver ``state`` (None:
    the optimiser starts afresh from the image); ``stages`` are the records of the coarse
    stages before it."""

    phase: int
    image: np.ndarray
    state: Any
    done: int
    stages: list[dict]


class Outcome(NamedTuple):
    """How a run ended.

    ``result``: the full-size phase's :class:`jstyle.engine.Result` (its image with the
    content's colours restored when the config asks for it); for a run that stopped in a
    coarse stage, that stage's image upsampled to the full size, with no full-size history
    and no losses at the full size (``terms`` and ``delivered`` None). ``stages``: a record
    of each coarse stage run (the one that stopped included, marked ``"complete": False``).
    ``interrupted``: stopped by an interrupt. ``phase``: the phase the run ended in.
    ``resume``: where to continue, when the run did not complete. ``content_weight``: the
    alpha ``balance: auto`` measured for the phase the run ended in (None: the config's)."""

    result: Any
    stages: list[dict]
    interrupted: bool
    phase: Phase
    resume: ResumePoint | None
    content_weight: float | None = None


def phases(config: Config, height: int, width: int) -> list[Phase]:
    """The phases of a run whose full size is ``height`` x ``width``.

    Eq. 1's content loss grows with the number of pixels while eq. 4's style loss (divided
    by M^2) does not, so at a smaller size the same alpha/beta favours style. Each coarse
    stage therefore scales alpha by the ratio of pixel counts, to strike the balance the
    full-size stage will."""
    from jstyle.images import fitted_size

    out = []
    count = len(config.coarse_sizes)
    for number, size in enumerate(config.coarse_sizes):
        w, h = fitted_size(width, height, size)
        out.append(Phase(number, f"coarse stage {number + 1}/{count}", size, h, w,
                         config.stage_iterations,
                         config.content_weight * (height * width) / (h * w)))
    out.append(Phase(count, "full size", config.size, height, width, config.iterations,
                     config.content_weight))
    return out


def objective_and_solver(config: Config, preprocessing,
                         shape: tuple[int, int] | None = None):
    """The :class:`jstyle.objective.Objective` and solver a config describes; ``shape``:
    the full-size image's (height, width), from which ``tile_size: auto`` decides its
    tiles (:func:`jstyle.memory.tile_size`; without it, no tiles for auto)."""
    from jstyle.memory import tile_size
    from jstyle.objective import Objective
    from jstyle.optimize import make_solver
    from jstyle.precision import resolve

    resolution = resolve(config.precision, config.sharding, config.winograd)
    objective = Objective(
        content_layers=config.content_layers,
        style_layers=config.style_layers,
        content_weight=config.content_weight,
        style_weight=config.style_weight,
        tv_weight=config.tv_weight,
        pooling=config.pooling,
        preprocessing=preprocessing,
        remat=config.remat,
        precision=resolution.used,
        convolutions=resolution.convolutions,
        style_losses=config.style_loss,
        seed=config.seed,
        tile=tile_size(*shape, config) if shape else
        (0 if config.tile_size == TILE_AUTO else config.tile_size),
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


@functools.lru_cache(maxsize=2)
def _weights(path: str, modified: float):
    from jstyle.weights import load_weights

    return load_weights(path)


class Preparation(NamedTuple):
    """The kernels' preparation running beside a run's start (:func:`prepare_kernels`)."""

    thread: Any  # threading.Thread
    cancel: Any  # threading.Event

    def finish(self) -> None:
        """Stop it after the kernel in hand (its transforms are kept all the same) and wait."""
        self.cancel.set()
        self.thread.join()


def prepare_kernels(config: Config, height: int, width: int,
                    phase: int = 0) -> Preparation | None:
    """Start transforming the Winograd kernels that phase ``phase`` of a run on a
    ``height`` x ``width`` photo will use, on a thread of its own
    (:func:`jstyle.onednn.prepare_winograd`), while the process goes on starting: the
    transforms are much of a warm start's first evaluation, and importing JAX, before
    it, keeps one core busy and leaves the others free. The run's first evaluation then
    finds them kept (a kernel is found by its bytes: a transform prepared for anything
    else is never used). None where the run will not use them: another precision, no
    Winograd, sharding, tiles asked for, style images larger than the photo, or weights
    not made yet."""
    import threading

    if config.precision != "float32" or not config.winograd or config.sharding != "none" \
            or config.tile_size not in (0, TILE_AUTO) or config.style_scale > 1:
        return None
    from jstyle.weights import named_path

    path = named_path(config.weights)  # not made yet: the run provisions it, no preparing
    stages = phases(config, height, width)
    if not path.is_file() or not 0 <= phase < len(stages):
        return None
    stage = stages[phase]
    cancel = threading.Event()

    def work() -> None:
        from jstyle import onednn
        from jstyle.cache import kernels_dir
        from jstyle.layers import deepest

        try:
            weights = _weights(str(path), path.stat().st_mtime)
            layers = deepest(n for n, _ in config.content_layers + config.style_layers)
            jobs = onednn.winograd_jobs(weights.params, stage.height, stage.width, layers)
            onednn.prepare_winograd(kernels_dir(), jobs, cancel)
        except Exception:  # noqa: BLE001 - the run reports its own errors, and transforms
            pass  # whatever was not prepared on its first evaluation

    thread = threading.Thread(target=work, name="jstyle-kernels", daemon=True)
    thread.start()
    return Preparation(thread, cancel)


def load_cached_weights(path: str | None, log=print):
    """The weights a config names -- a file, or a variant name such as ``vgg19-normalized``
    (provisioned on first use) -- loaded once per file version."""
    from jstyle.weights import resolve_weights

    resolved = resolve_weights(path, log=log)
    return _weights(str(resolved), resolved.stat().st_mtime)


def resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An RGB image ``(H, W, 3)`` resized (antialiased); unchanged at its own size."""
    return _resize(image, (height, width, 3))


def resized_masks(masks: np.ndarray | None, height: int, width: int) -> np.ndarray | None:
    """Spatial-control masks ``(R, H, W)`` resized (antialiased), or None."""
    return None if masks is None else _resize(masks, (len(masks), height, width))


def _resize(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import jax

    array = np.asarray(array, np.float32)
    if array.shape == shape:
        return array
    return np.asarray(jax.image.resize(array, shape, "linear", antialias=True))


def state_template(weights, inputs, config: Config, phase: Phase):
    """The shapes of the solver state of ``phase`` (to check a saved one against)."""
    from jstyle import engine
    from jstyle.inputs import style_size

    objective, solver = objective_and_solver(config, weights.preprocessing,
                                             inputs.content.shape[:2])
    objective = dataclasses.replace(objective, content_weight=phase.content_weight)
    sh, sw = style_size(phase.height, phase.width, config)
    masks = None if inputs.masks is None else np.zeros(
        (len(inputs.masks), phase.height, phase.width), np.float32)
    return engine.state_template(
        weights.params, np.zeros((phase.height, phase.width, 3), np.float32),
        [np.zeros((sh, sw, 3), np.float32)] * len(inputs.styles), config.style_blend, masks,
        objective, solver)


def balanced_content_weight(weights, content: np.ndarray, styles: list, masks, config: Config,
                            objective, phase: Phase) -> float:
    """``balance: auto``'s alpha for ``phase``
    (:func:`jstyle.objective.balanced_content_weight`), measured at the phase's white-noise
    start (the config's seed and amplitude, whatever ``init`` says), so that a resumed run
    measures the alpha it had; its targets are the phase's own."""
    import jax

    from jstyle.objective import balanced_content_weight as measure
    from jstyle.objective import compute_targets, network_params
    from jstyle.transfer import initial_image

    params = network_params(weights.params, objective)
    targets = jax.jit(compute_targets, static_argnums=3)(
        params, content, styles, objective, config.style_blend, masks)
    noise = initial_image("noise", content, styles[0], config.seed, config.noise_amplitude)
    alpha = jax.jit(measure, static_argnums=3)(noise, params, targets, objective,
                                               config.balance_ratio)
    return float(alpha)


def _stage_record(phase: Phase, result, earlier: dict | None, complete: bool) -> dict:
    """A coarse stage's record, merged with the part run before a resume (``earlier``)."""
    history = (earlier or {}).get("history", []) + list(result.history)
    seconds = sum(v for k, v in result.timings.items() if k.endswith("_s"))
    return {"size": phase.size, "width": phase.width, "height": phase.height,
            "content_weight": phase.content_weight, "iterations": len(history),
            "loss": result.terms["total"], "delivered_loss": result.delivered["total"],
            "evaluations": (earlier or {}).get("evaluations", 0) + result.evaluations,
            "seconds": (earlier or {}).get("seconds", 0.0) + seconds,
            "history": history, "complete": complete}


def run_transfer(weights, inputs, config: Config, *, resume: ResumePoint | None = None,
                 on_progress: Callable | None = None, log: Callable[[str], None] | None = None,
                 on_phase: Callable[[Phase, int], Callable | None] | None = None) -> Outcome:
    """Every phase of one run, on sized inputs (:mod:`jstyle.inputs`).

    ``resume``: continue a stopped run there (the phases before it are not run again).
    ``on_progress`` hears the full-size phase's :class:`jstyle.engine.Progress` reports
    (their iterations counted from the phase's start, resumed iterations included);
    ``log`` one line as each coarse stage starts. ``on_phase(phase, done)`` hears each
    phase start (``done``: its iterations made before a resume), before its targets and
    compilation; what it returns for a coarse stage (or None) hears that stage's reports
    (:meth:`jstyle.progress.ProgressBar.phase` is one). With ``sharding: spatial`` the
    full-size phase runs with the image's rows split over every device
    (:func:`jstyle.sharding.stylize_spatial`). An interrupt or a non-finite loss in any
    phase ends the run in that phase (see :class:`Outcome`)."""
    from jstyle import color, engine, xla_cpu
    from jstyle.cache import enable_compilation_cache
    from jstyle.inputs import style_size
    from jstyle.transfer import stylize

    xla_cpu.apply()  # a no-op once JAX has started (an API caller's own setting stays)
    enable_compilation_cache()
    objective, solver = objective_and_solver(config, weights.preprocessing,
                                             inputs.content.shape[:2])
    content, styles = color.prepare(config.preserve_color, inputs.content, inputs.styles)
    height, width = content.shape[:2]
    plan = phases(config, height, width)
    first = 0 if resume is None else resume.phase
    stages = [] if resume is None else [s for s in resume.stages if s.get("complete", True)]
    earlier = None if resume is None or not plan[first].coarse else \
        next((s for s in resume.stages if not s.get("complete", True)), None)
    image = inputs.init if resume is None else resume.image

    def balanced(phase: Phase) -> float | None:
        return phase.content_weight if config.balance == "auto" else None

    def finish(result, phase: Phase):
        """The result at the full size, in the content's colours."""
        out = result.image if not phase.coarse else resized(result.image, height, width)
        out = color.finish(config.preserve_color, out, inputs.content)
        if phase.coarse:  # no loss was evaluated at the full size
            return result._replace(image=out, terms=None, delivered=None, history=[],
                                   evaluations=0, evaluations_history=[], state=None)
        return result._replace(image=out)

    with engine.stoppable():  # one scope: a Ctrl-C between phases waits for the next check
        for phase in plan[first:]:
            resumed = resume is not None and phase.index == first
            done = resume.done if resumed else 0
            sh, sw = style_size(phase.height, phase.width, config)
            start = image if isinstance(image, str) or resumed else \
                resized(image, phase.height, phase.width)
            kw = {"iterations": phase.iterations - done, "init": start, "seed": config.seed,
                  "noise_amplitude": config.noise_amplitude, "style_blend": config.style_blend,
                  "state": resume.state if resumed else None, "offset": done,
                  "delivered_bits": config.image_bits,  # the output file's quantisation
                  "redraw_every": config.redraw_every}
            run = stylize
            listener = on_phase(phase, done) if on_phase is not None else None
            if phase.coarse:
                if log:
                    log(f"jstyle: {phase.name}: {phase.width}x{phase.height} px, "
                        f"{phase.iterations} iterations"
                        f"{f' (resuming after {done})' if resumed else ''}")
                kw["masks"] = resized_masks(inputs.masks, phase.height, phase.width)
                kw["on_progress"] = listener
                stage_styles = [resized(s, sh, sw) for s in styles]
                stage_content = resized(content, phase.height, phase.width)
            else:
                kw.update(save_every=config.save_every, on_progress=on_progress)
                stage_styles, stage_content = styles, content
                if config.sharding == "spatial":  # masks are refused with sharding by config
                    from jstyle.sharding import stylize_spatial as run
                else:
                    kw["masks"] = inputs.masks
            if config.balance == "auto":
                phase = phase._replace(content_weight=balanced_content_weight(
                    weights, stage_content, stage_styles, kw.get("masks"), config, objective,
                    phase))
                if log:
                    log(f"jstyle: {phase.name}: balance auto sets content_weight "
                        f"{phase.content_weight:.4g}")
            interrupted = False
            try:  # a stop asked for between phases is taken at the next one's first check
                result = run(weights.params, stage_content, stage_styles,
                             dataclasses.replace(objective,
                                                 content_weight=phase.content_weight),
                             solver, **kw)
            except engine.Interrupted as stop:
                result, interrupted = stop.result, True
            if phase.coarse:
                record = _stage_record(phase, result, earlier if resumed else None,
                                       not (interrupted or result.stopped))
                stages.append(record)
            if interrupted or result.stopped:
                point = ResumePoint(phase.index, result.image, result.state,
                                    done + len(result.history), stages)
                stopped = result.stopped
                if phase.coarse:
                    stopped = f"{phase.name} ({phase.size} px): {stopped}"
                return Outcome(finish(result._replace(stopped=stopped), phase), stages,
                               interrupted, phase, point, balanced(phase))
            image = result.image
    return Outcome(finish(result, phase), stages, False, phase, None, balanced(phase))

