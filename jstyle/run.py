"""Command line: ``python -m jstyle.run --config configs/paper.yaml [overrides]``.

The thin shell around the pure core: config -> images -> weights ->
optimisation -> PNG and JSON sidecar. Every problem with the input is reported
as one line on stderr (exit code 2) before anything is compiled.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jstyle import __version__
from jstyle.config import FIELDS, Config, parse_override, read_yaml, resolve
from jstyle.errors import JStyleError
from jstyle.options import OUTPUT_SUFFIXES
from jstyle.terminal import EXIT_INTERRUPTED, EXIT_STOPPED

PROG = "python -m jstyle.run"


class _Override(argparse.Action):
    """Collects --content/--style/--mask/--output/--set in command-line order (later wins)."""

    def __call__(self, parser, namespace, value, option_string=None):
        overrides = getattr(namespace, "overrides", None) or []
        if option_string == "--set":
            overrides.append((None, value))  # parsed in load_config, where errors are reported
        elif option_string in ("--style", "--mask"):  # repeated: one list, at the first's place
            attribute = f"_{self.dest}_list"
            items = getattr(namespace, attribute, None)
            if items is None:
                items = []
                setattr(namespace, attribute, items)
                overrides.append((self.dest, items))
            items.append(value)
        else:
            overrides.append((self.dest, value))
        namespace.overrides = overrides


def _keys_help() -> str:
    lines = ["config keys (YAML file, or --set key=value; defaults: the paper's as printed, on "
             "the network as trained; configs/paper.yaml is the paper in full):"]
    for name, field in FIELDS.items():
        default = Config.__dataclass_fields__[name].default
        shown = Config().to_dict()[name] if default is not None else "none"
        lines.append(f"  {name:<15} {field.metadata['help']} [default: {shown}]")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The argument parser (its --help lists every config key)."""
    from jstyle.terminal import Parser

    p = Parser(
        prog=PROG,
        description="Render a content photo in the style of a painting by optimising the "
        "pixels of an image (Gatys, Ecker & Bethge, CVPR 2016).",
        epilog=_keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="YAML",
                        help="config file (e.g. configs/paper.yaml)")
    source.add_argument("--from-image", metavar="IMAGE",
                        help="redo the run that made this jstyle PNG or TIFF (its config is "
                        "inside); writes <name>_reproduced.png (or .tif) unless --output says "
                        "otherwise")
    p.add_argument("--content", metavar="PATH", action=_Override, help="content photo")
    p.add_argument("--style", metavar="PATH", action=_Override,
                   help="style image; repeat for several (blended: see style_blend_weights)")
    p.add_argument("--mask", metavar="PATH", action=_Override, dest="masks",
                   help="spatial control: the region of one style image, white where it applies; "
                   "repeat, one per --style, in the same order")
    p.add_argument("--output", metavar="PATH", action=_Override, help="output PNG")
    p.add_argument("--set", metavar="KEY=VALUE", action=_Override,
                   help="set any config key (value parsed as YAML); repeatable, later wins")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run at the output path (same options)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--web", metavar="PORT", nargs="?", const=0, type=_port,
                   help="watch the run on a local web page at http://127.0.0.1:PORT/ (a free "
                   "port when none is given; the address is printed): the image after each "
                   "chunk, the loss curve, the config, and a Stop button that does what "
                   "Ctrl-C does")
    p.add_argument("--version", action="version", version=f"jstyle {__version__}")
    return p


def load_config(args: argparse.Namespace) -> Config:
    """The config file (if any) with the command line's overrides applied, validated."""
    values: dict[str, Any] = read_yaml(args.config) if args.config else {}
    if args.from_image:
        from jstyle.outputs import config_from_image

        image = Path(args.from_image)
        values = {**config_from_image(image),
                  "output": str(image.with_name(f"{image.stem}_reproduced{image.suffix}"))}
    for key, value in getattr(args, "overrides", None) or []:
        if key is None:
            key, value = parse_override(value)
        values[key] = value
    return resolve(values)


def check_output(output: Path, inputs: Sequence[str | None],
                 suffixes: Sequence[str] = (".png",)) -> None:
    """Refuse an output whose name does not end in one of ``suffixes`` (a run's: its
    format's, :data:`jstyle.options.OUTPUT_SUFFIXES`) or that is one of the inputs; create
    its folder and check that it is writable -- before anything heavy runs."""
    if output.suffix.lower() not in suffixes:
        raise JStyleError(f"output {output} must end in {' or '.join(suffixes)}")
    resolved = output.resolve()
    for path in inputs:
        if path and Path(path).resolve() == resolved:
            raise JStyleError(f"output {output} is one of the input images; choose another path")
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise JStyleError(f"cannot create output folder {folder}: {e.strerror}") from None
    probe = folder / f".{output.name}.write-test"
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise JStyleError(f"output folder {folder} is not writable: {e.strerror}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 done, 1 stopped early, 2 bad input,
    130 interrupted: the image so far is saved and ``--resume`` continues it)."""
    from jstyle import terminal

    return terminal.main(parser, _run, argv, name="jstyle")


def _port(text: str) -> int:
    """``--web``'s PORT: a TCP port number (0: any free one)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"PORT must be a port number, 1 to 65535 (none: a free "
                                         f"one), not {text!r}")
    return int(text)


def _run(args: argparse.Namespace) -> int:
    config = load_config(args)
    if args.web is None:
        return _run_config(config, args)
    from jstyle.web.server import watch  # only with --web: the run itself never needs it

    with watch(args.web, config) as page:  # before anything heavy: a taken port is exit 2
        args.page = page
        return page.ended(_run_config(config, args))


def _run_config(config: Config, args: argparse.Namespace) -> int:
    from jstyle import xla_cpu
    from jstyle.distributed import initialize_distributed

    xla_cpu.apply()  # XLA reads its flags when JAX starts: first of all
    initialize_distributed()  # several hosts: before anything else touches JAX
    from jstyle.inputs import content_paths

    paths = content_paths(config.content)
    if paths is None:
        return _run_one(config, args, resume=args.resume)
    # A batch: one output per content image, in a folder named after the output. One stop
    # scope around it all: a Ctrl-C between two images is taken when the next one's
    # optimisation starts, so that image is saved (at iteration 0) and --resume goes on.
    from jstyle import engine

    folder = Path(config.output).with_suffix("")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    with engine.stoppable():
        if config.sharding == "batch":
            return _run_sharded_batch(config, paths, folder, args, log)
        return _run_batch(config, paths, folder, args, log)


def _run_batch(config: Config, paths: list[str], folder: Path, args: argparse.Namespace,
               log) -> int:
    """A batch run image by image (each a one-device run); finished images skipped with
    ``--resume``."""
    from jstyle import outputs

    codes = []
    for i, path in enumerate(paths, start=1):
        item = dataclasses.replace(config, content=path, output=str(
            folder / f"{Path(path).stem}{Path(config.output).suffix}"))  # the output's format
        sidecar = outputs.sidecar_path(Path(item.output))
        state = _recorded_state(sidecar) if args.resume else None
        if state == "complete":
            log(f"jstyle: image {i}/{len(paths)}: {path} is done ({item.output})")
            continue
        log(f"jstyle: image {i}/{len(paths)}: {path}")
        code = _run_one(item, args, resume=state == "incomplete")
        if code == EXIT_INTERRUPTED:
            return code
        codes.append(code)
    return max(codes, default=0)


def _recorded_state(sidecar: Path) -> str | None:
    """"complete", "incomplete" or None (no readable record) for a batch item."""
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return "incomplete" if record.get("incomplete") else "complete"


def _run_one(config: Config, args: argparse.Namespace, resume: bool) -> int:
    started = time.perf_counter()
    output = Path(config.output)
    check_output(output, [config.content, *config.style, *config.masks, config.init],
                 OUTPUT_SUFFIXES[config.image_format])

    from jstyle import outputs

    saved, previous = outputs.read_resume(output, config.to_dict()) if resume else (None, {})

    # Inputs before anything heavy: a bad path fails in a second, not after compiling.
    from jstyle import pipeline
    from jstyle.inputs import load_inputs
    from jstyle.memory import check_memory, tile_size

    estimates = []  # the memory check's estimate, made before anything is resized
    preparing = []  # the kernels' preparation, started as soon as the size is known

    def check(h: int, w: int) -> None:
        preparing.append(pipeline.prepare_kernels(config, h, w, saved.phase if saved else 0))
        estimates.append(check_memory(h, w, config))  # (this imports JAX: the overlap)
        if preparing[0] is not None and tile_size(h, w, config):
            preparing[0].finish()  # tiles: the network runs on crops of other shapes

    try:
        return _run_prepared(config, args, output, saved, previous, started,
                             load_inputs(config, check=check), estimates)
    finally:
        if preparing and preparing[0] is not None:
            preparing[0].finish()


def _run_prepared(config: Config, args: argparse.Namespace, output: Path, saved,
                  previous: dict, started: float, inputs, estimates: list) -> int:
    """:func:`_run_one` once its inputs are read."""
    from jstyle import outputs, pipeline

    height, width = inputs.content.shape[:2]
    plan = pipeline.phases(config, height, width)
    if saved is not None:
        phase = plan[saved.phase] if 0 <= saved.phase < len(plan) else None
        if phase is None or saved.image.shape != (phase.height, phase.width, 3):
            raise JStyleError(f"{outputs.resume_path(output)} does not fit this run (another "
                              f"size or coarse_sizes); resume with the same inputs and size")

    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    page = getattr(args, "page", None)  # the live page of --web
    if page is not None:
        log = page.tee(log)
    weights = pipeline.load_cached_weights(config.weights, log=log)

    import jax

    if config.sharding == "spatial":  # before compiling: the rows must split evenly
        from jstyle.sharding import check_spatial

        check_spatial(height, pipeline.objective_and_solver(config, weights.preprocessing)[0],
                      jax.device_count())
    point = None if saved is None else _resume_point(saved, previous, weights, inputs, config,
                                                     plan, output)
    done = point.done if point is not None and point.phase == plan[-1].index else 0
    earlier = previous if done else {}  # the full-size iterations already made
    terms_history = list(earlier.get("terms_history", []))

    writer = jax.process_index() == 0  # one host reports and writes
    quiet = args.quiet or not writer
    from jstyle.precision import notice as precision_notice
    from jstyle.progress import ProgressBar

    where = "" if point is None else \
        f" (resuming {plan[point.phase].name} after iteration {point.done})"
    from jstyle.memory import tiling_record

    tiles = tiling_record(height, width, config)
    in_tiles = "" if tiles["tiles"] == 1 else \
        f", in {tiles['tiles']} tiles of {tiles['crop'][1]}x{tiles['crop'][0]} px crops"
    log(f"jstyle: {width}x{height} px, {config.iterations} iterations of {config.optimizer}"
        f"{where}, on {jax.default_backend()}, about {estimates[0] / 2**30:.1f} GiB of memory"
        f"{in_tiles}")
    if fallback := precision_notice(config.precision, config.sharding):
        log(fallback)

    def on_progress(progress) -> None:
        iteration = done + progress.iteration
        bar.update(progress, offset=done)
        if page is not None:
            page.progress(iteration, progress.terms, progress.image)
        terms_history.append({"iteration": iteration, **{
            k: progress.terms[k] for k in ("total", "content", "style", "tv")}})
        if config.save_every and iteration % config.save_every == 0 \
                and iteration < config.iterations and writer:
            outputs.save_frame(output, iteration, progress.image, config, inputs.print_info)

    if page is not None:
        from jstyle import color

        page.begin(config, done, lambda image: color.finish(config.preserve_color, image,
                                                            inputs.content))
    with ProgressBar(config.iterations, initial=done, disable=quiet) as bar:
        outcome = pipeline.run_transfer(weights, inputs, config, resume=point,
                                        on_progress=on_progress, on_phase=bar.phase,
                                        log=bar.write if page is None else page.tee(bar.write))
    result, history = _continued(outcome.result, earlier)
    record = outputs.run_record(config, inputs, weights, result, outcome.stages, history,
                                terms_history, result.evaluations, estimates[0], started)
    if outcome.content_weight is not None:
        record["balance"] = outputs.balance_record(config, outcome.content_weight, result)
    resume_at = None
    if outcome.resume is not None:
        resume_at = _incomplete(record, result, len(history), outcome.phase, outcome.resume)
    return _finish(output, result, record, outcome.interrupted, log, resume_at,
                   inputs.print_info)


def _continued(result, earlier: dict):
    """``result`` with the iterations a resumed run made before (``earlier``: its record;
    empty for a fresh run) counted in: its evaluations and their history; and the whole
    loss history."""
    counts = list(earlier.get("evaluations_per_iteration") or []) \
        + list(result.evaluations_history or [])
    result = result._replace(evaluations_history=counts,
                             evaluations=earlier.get("evaluations", 0) + result.evaluations)
    return result, list(earlier.get("history", [])) + list(result.history)


def _incomplete(record: dict[str, Any], result, iterations: int, phase, point):
    """Mark ``record`` incomplete (why, after which full-size iteration, in which phase) and
    return the resume file of ``point`` (a :class:`jstyle.pipeline.ResumePoint`)."""
    from jstyle import engine, outputs

    record["incomplete"] = {"reason": result.stopped, "iteration": iterations,
                            "phase": phase.index, "phase_name": phase.name}
    leaves, structure = (None, None) if point.state is None else \
        engine.state_leaves(point.state)
    return outputs.SavedPoint(point.phase, point.done, point.image, leaves, structure)


def _restored_state(saved, template, output: Path):
    """The optimiser state a resume file holds, checked against ``template`` (this run's
    shapes); None, with a warning, when it is another optimiser's (another jstyle version's
    L-BFGS among them): the run then continues from the saved image with a fresh history,
    as from a file that holds the image alone, and loses no iteration it has done."""
    from jstyle import engine, outputs

    try:
        return engine.state_from_leaves(template, saved.leaves, saved.structure)
    except ValueError as e:
        print(f"jstyle: warning: the optimiser state in {outputs.resume_path(output)} cannot "
              f"be used ({e}); continuing from its image with a fresh optimiser history",
              file=sys.stderr)
        return None


def _resume_point(saved, previous: dict, weights, inputs, config: Config, plan, output: Path):
    """The :class:`jstyle.pipeline.ResumePoint` of a resume file, its optimiser state
    checked against this run's."""
    from jstyle import pipeline

    state = None if saved.leaves is None else _restored_state(
        saved, pipeline.state_template(weights, inputs, config, plan[saved.phase]), output)
    return pipeline.ResumePoint(saved.phase, saved.image, state, saved.done,
                                list(previous.get("coarse_stages", [])))


def _finish(output: Path, result, record: dict[str, Any], interrupted: bool, log,
            resume=None, info=None) -> int:
    """Write one output (``info``: the content photo's ICC profile and DPI, carried over)
    and say how it ended (process 0 of a multi-host run only)."""
    import jax

    from jstyle import outputs

    if jax.process_index() != 0:  # the others ran the same program and agree
        return EXIT_INTERRUPTED if interrupted else EXIT_STOPPED if result.stopped else 0
    outputs.write_outputs(output, result.image, record, resume, info)
    outputs.write_report(output, record, result.image)
    side = outputs.sidecar_path(output)
    if interrupted:
        print(f"jstyle: {result.stopped}; saved {output} and {side}; continue with the same "
              "command and --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.stopped:
        print(f"jstyle: stopped: {result.stopped}; saved {output} and {side}", file=sys.stderr)
        return EXIT_STOPPED
    log(f"jstyle: wrote {output} and {side} (loss {result.delivered['total']:.4g}, "
        f"{result.timings['optimize_s']:.1f} s)")
    return 0


def _run_sharded_batch(config: Config, paths: list[str], folder: Path,
                       args: argparse.Namespace, log) -> int:
    """A batch with ``sharding: batch``: each group of same-sized photos optimised at once,
    the group split over every device (:func:`jstyle.sharding.stylize_batch`); with
    ``--resume``, the finished photos are skipped and the interrupted ones continue from
    their saved optimiser states."""
    from jstyle import outputs, pipeline
    from jstyle.inputs import load_inputs
    from jstyle.memory import check_memory

    started = time.perf_counter()
    items = []
    for path in paths:  # every input checked before anything compiles
        item = dataclasses.replace(config, content=path, output=str(
            folder / f"{Path(path).stem}{Path(config.output).suffix}"))  # the output's format
        output = Path(item.output)
        check_output(output, [path, *item.style, item.init], OUTPUT_SUFFIXES[item.image_format])
        saved, previous = None, {}
        status = _recorded_state(outputs.sidecar_path(output)) if args.resume else None
        if status == "complete":
            log(f"jstyle: {path} is done ({item.output})")
            continue
        if status == "incomplete":
            saved, previous = outputs.read_resume(output, item.to_dict())
        estimates: list[int] = []
        inputs = load_inputs(item, check=lambda h, w, e=estimates, c=item:
                             e.append(check_memory(h, w, c)))
        if saved is not None and saved.image.shape != inputs.content.shape:
            raise JStyleError(f"{outputs.resume_path(output)} does not fit this run (another "
                              "size); resume with the same inputs and size")
        items.append((item, inputs, estimates[0], saved, previous))
    if not items:
        return 0
    weights = pipeline.load_cached_weights(config.weights, log=log)
    largest = max((i[1].content.shape[:2] for i in items), key=lambda s: s[0] * s[1])
    objective, solver = pipeline.objective_and_solver(config, weights.preprocessing, largest)
    import jax

    from jstyle import engine
    from jstyle.cache import enable_compilation_cache
    from jstyle.precision import notice as precision_notice
    from jstyle.progress import ProgressBar
    from jstyle.sharding import make_mesh, stylize_batch

    enable_compilation_cache()
    mesh = make_mesh("batch")
    writer = jax.process_index() == 0
    groups: dict[tuple, list] = {}  # same size, and all fresh or all resumed
    for entry in items:
        groups.setdefault((entry[1].content.shape, entry[3] is not None), []).append(entry)
    codes = []
    for (shape, resumed), group in groups.items():
        log(f"jstyle: {len(group)} image(s) of {shape[1]}x{shape[0]} px over {mesh.size} "
            f"device(s), {config.iterations} iterations of {config.optimizer}"
            f"{' (resuming)' if resumed else ''}")
        if fallback := precision_notice(config.precision, config.sharding):
            log(fallback)
        states = offsets = None
        if resumed:
            template = pipeline.state_template(
                weights, group[0][1], config, pipeline.phases(config, shape[0], shape[1])[-1])
            states, offsets = [], []
            for item, _, _, saved, _ in group:
                if saved.leaves is None:
                    raise JStyleError(f"{item.output} stopped without an optimiser state (a "
                                      "non-finite loss); resume it with sharding: none")
                states.append(_restored_state(saved, template, Path(item.output)))
                offsets.append(saved.done)
            init = np.stack([saved.image for *_, saved, _ in group])
        else:
            inits = [inputs.init for _, inputs, *_ in group]
            init = inits[0] if isinstance(inits[0], str) else np.stack(inits)

        def on_progress(progress, group=group):
            progress_bar.update_batch(progress)
            if not (config.save_every and writer):
                return
            for (item, inputs, *_), image, done in zip(group, progress.images,
                                                       progress.iterations, strict=True):
                if done % config.save_every == 0 and 0 < done < config.iterations:
                    outputs.save_frame(Path(item.output), done, image, config,
                                       inputs.print_info)

        interrupted = False
        first = min(offsets) if offsets else 0
        with ProgressBar(config.iterations, initial=first, disable=args.quiet or not writer) \
                as progress_bar:
            try:
                results = stylize_batch(
                    weights.params, [inputs.content for _, inputs, *_ in group],
                    group[0][1].styles, objective, solver, iterations=config.iterations,
                    init=init, seed=config.seed, noise_amplitude=config.noise_amplitude,
                    style_blend=config.style_blend, mesh=mesh, save_every=config.save_every,
                    states=states, offsets=offsets, on_progress=on_progress,
                    delivered_bits=config.image_bits, redraw_every=config.redraw_every)
            except engine.Interrupted as stop:
                results, interrupted = stop.results, True
        phase = pipeline.phases(config, shape[0], shape[1])[-1]  # the only one: no coarse
        for (item, inputs, estimate, _, previous), result in zip(group, results, strict=True):
            result, history = _continued(result, previous)
            record = outputs.run_record(item, inputs, weights, result, [], history, [],
                                        result.evaluations, estimate, started)
            record["sharding"] = {"mode": "batch", "devices": mesh.size, "batch": len(group)}
            point = None if not result.stopped else _incomplete(
                record, result, len(history), phase,
                pipeline.ResumePoint(phase.index, result.image, result.state, len(history), []))
            codes.append(_finish(Path(item.output), result, record, interrupted, log, point,
                                 inputs.print_info))
        if interrupted:
            return EXIT_INTERRUPTED
    return max(codes, default=0)


if __name__ == "__main__":
    sys.exit(main())
