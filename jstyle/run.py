"""Command line: ``python -m jstyle.run --config configs/paper.yaml [overrides]``.

The thin shell around the pure core: config -> images -> weights ->
optimisation -> PNG and JSON sidecar. Every problem with the input is reported
as one line on stderr (exit code 2) before anything is compiled.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jstyle import __version__
from jstyle.config import FIELDS, Config, parse_override, read_yaml, resolve
from jstyle.errors import JStyleError

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
    lines = ["config keys (YAML file, or --set key=value; defaults are the paper's):"]
    for name, field in FIELDS.items():
        default = Config.__dataclass_fields__[name].default
        shown = Config().to_dict()[name] if default is not None else "none"
        lines.append(f"  {name:<15} {field.metadata['help']} [default: {shown}]")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The argument parser (its --help lists every config key)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Render a content photo in the style of a painting by optimising the "
        "pixels of an image (Gatys, Ecker & Bethge, CVPR 2016).",
        epilog=_keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="YAML",
                        help="config file (e.g. configs/paper.yaml)")
    source.add_argument("--from-image", metavar="PNG",
                        help="redo the run that made this jstyle PNG (its config is inside); "
                        "writes <name>_reproduced.png unless --output says otherwise")
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
    p.add_argument("--version", action="version", version=f"jstyle {__version__}")
    return p


def load_config(args: argparse.Namespace) -> Config:
    """The config file (if any) with the command line's overrides applied, validated."""
    values: dict[str, Any] = read_yaml(args.config) if args.config else {}
    if args.from_image:
        from jstyle.outputs import config_from_image

        image = Path(args.from_image)
        values = {**config_from_image(image),
                  "output": str(image.with_name(f"{image.stem}_reproduced.png"))}
    for key, value in getattr(args, "overrides", None) or []:
        if key is None:
            key, value = parse_override(value)
        values[key] = value
    return resolve(values)


def check_output(output: Path, inputs: Sequence[str | None]) -> None:
    """Refuse an output that is not a PNG or is one of the inputs; create its folder and
    check that it is writable -- before anything heavy runs."""
    if output.suffix.lower() != ".png":
        raise JStyleError(f"output {output} must end in .png (jstyle writes PNG)")
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
    args = parser().parse_args(argv)
    # Ctrl-C must save the run even where the shell started us with SIGINT ignored (a
    # background job of a script), and SIGTERM is handled the same way.
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:  # an interrupt that reaches here came before the optimisation: nothing to save
        return guarded(lambda: _run(args), args.debug, "interrupted")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def guarded(body: Callable[[], int], debug: bool, interrupted: str) -> int:
    """A command's exit code: ``body()``'s, 2 after a :class:`JStyleError` (printed as one
    line) and 130 after Ctrl-C (``interrupted`` says what became of the work); ``debug``
    lets both raise, with their tracebacks."""
    try:
        return body()
    except JStyleError as e:
        if debug:
            raise
        print(f"jstyle: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"jstyle: {interrupted}", file=sys.stderr)
        return 130


def _terminate(signum, frame) -> None:
    """SIGINT and SIGTERM become KeyboardInterrupt: the run saves what it has, then exits."""
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    config = load_config(args)
    from jstyle.sharding import initialize_distributed

    initialize_distributed()  # several hosts: before anything else touches JAX
    from jstyle.inputs import content_paths

    paths = content_paths(config.content)
    if paths is None:
        return _run_one(config, args, resume=args.resume)
    # A batch: one output per content image, in a folder named after the output.
    from jstyle import outputs

    folder = Path(config.output).with_suffix("")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    if config.sharding == "batch":
        return _run_sharded_batch(config, paths, folder, args, log)
    codes = []
    for i, path in enumerate(paths, start=1):
        item = dataclasses.replace(config, content=path,
                                   output=str(folder / f"{Path(path).stem}.png"))
        sidecar = outputs.sidecar_path(Path(item.output))
        state = _recorded_state(sidecar) if args.resume else None
        if state == "complete":
            log(f"jstyle: image {i}/{len(paths)}: {path} is done ({item.output})")
            continue
        log(f"jstyle: image {i}/{len(paths)}: {path}")
        code = _run_one(item, args, resume=state == "incomplete")
        if code == 130:
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
    check_output(output, [config.content, *config.style, *config.masks, config.init])

    from jstyle import outputs

    done, history, evaluations, terms_history, earlier_counts = 0, [], 0, [], []
    resumed = None
    if resume:
        resumed, previous = outputs.read_resume(output, config.to_dict())
        done = len(previous["history"])
        history, evaluations = previous["history"], previous.get("evaluations", 0)
        terms_history = previous.get("terms_history", [])
        earlier_counts = previous.get("evaluations_per_iteration") or []

    # Inputs before anything heavy: a bad path fails in a second, not after compiling.
    from jstyle.inputs import load_inputs
    from jstyle.memory import check_memory

    estimates = []  # the memory check's estimate, made before anything is resized
    inputs = load_inputs(config, check=lambda h, w: estimates.append(check_memory(h, w, config)))
    height, width = inputs.content.shape[:2]
    if resumed is not None and resumed.shape != inputs.content.shape:
        raise JStyleError(f"{outputs.resume_path(output)} holds a {resumed.shape[1]}x"
                          f"{resumed.shape[0]} image, not {width}x{height}; resume with the "
                          "same inputs and size")

    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    estimate = estimates[0]

    from jstyle.api import load_cached_weights, run_transfer

    weights = load_cached_weights(config.weights, log=log)

    import jax

    if config.sharding == "spatial":  # before compiling: the rows must split evenly
        from jstyle.api import objective_and_solver
        from jstyle.sharding import check_spatial

        check_spatial(height, objective_and_solver(config, weights.preprocessing)[0],
                      jax.device_count())
    quiet = args.quiet or jax.process_index() != 0  # one host reports and writes
    from jstyle.images import save_png
    from jstyle.progress import ProgressBar
    from jstyle.transfer import Interrupted
    log(f"jstyle: {width}x{height} px, {config.iterations} iterations of {config.optimizer}"
        f"{f' (resuming after {done})' if resumed is not None else ''}, on "
        f"{jax.default_backend()}, about {estimate / 2**30:.1f} GiB of memory")

    def on_progress(progress) -> None:
        iteration = done + progress.iteration
        bar.update(progress, offset=done)
        terms_history.append({"iteration": iteration, **{
            k: progress.terms[k] for k in ("total", "content", "style", "tv")}})
        if config.save_every and iteration % config.save_every == 0 \
                and iteration < config.iterations and jax.process_index() == 0:
            save_png(outputs.frame_path(output, iteration), progress.image)

    interrupted = False
    with ProgressBar(config.iterations, initial=done, disable=quiet) as bar:
        try:
            result, stages = run_transfer(weights, inputs, config, done=done, resumed=resumed,
                                          on_progress=on_progress, log=bar.write)
        except Interrupted as stop:
            result, stages, interrupted = stop.result, [], True

    history = history + result.history
    result = result._replace(evaluations_history=earlier_counts
                             + list(result.evaluations_history or []))
    record = _record(config, inputs, weights, result, stages, history, terms_history,
                     evaluations + result.evaluations, estimate, started)
    return _finish(output, result, record, interrupted, log)


def _record(config: Config, inputs, weights, result, stages: list, history: list[float],
            terms_history: list[dict], evaluations: int, estimate: int,
            started: float) -> dict[str, Any]:
    """The JSON sidecar of one output: its config, inputs, losses, timings and environment."""
    import jax

    height, width = inputs.content.shape[:2]
    record = {
        "jstyle_version": __version__,
        "config": config.to_dict(),
        "inputs": inputs.sources,
        "size": {"height": height, "width": width},
        "losses": result.terms,
        # eq. 7 of the PNG as saved (8-bit); "losses" are the optimiser's, of its float image
        "delivered_losses": result.delivered,
        "history": history,
        "terms_history": terms_history,
        "coarse_stages": stages,
        "evaluations": evaluations,
        "evaluations_per_iteration": result.evaluations_history,
        "timings": {**result.timings, "total_s": time.perf_counter() - started},
        "memory": {"estimate_bytes": estimate, "peak_rss_bytes": _peak_rss_bytes()},
        "jax": {
            "version": jax.__version__,
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "processes": jax.process_count(),
        },
        "python": platform.python_version(),
        "weights": {"path": str(weights.path), "sha256": weights.sha256,
                    "params_sha256": weights.params_sha256, "source": weights.source,
                    "variant": weights.variant,
                    **({"calibration": weights.normalization.calibration}
                       if weights.normalization else {})},
    }
    if config.preserve_color == "luminance":  # the PNG recombines it with the photo's colours
        record["delivered_losses_note"] = ("of the optimised image in 8 bits, before the "
                                           "content's colours were restored")
    if result.stopped:
        record["incomplete"] = {"reason": result.stopped, "iteration": len(history)}
    return record


def _finish(output: Path, result, record: dict[str, Any], interrupted: bool, log) -> int:
    """Write one output (process 0 of a multi-host run only) and say how it ended."""
    import jax

    from jstyle import outputs

    if jax.process_index() == 0:
        outputs.write_outputs(output, result.image, record)
        outputs.write_report(output, record, result.image)
    side = outputs.sidecar_path(output)
    iteration = len(record["history"])
    if interrupted:
        print(f"jstyle: interrupted after iteration {iteration}; saved {output} and {side}; "
              "continue with the same command and --resume", file=sys.stderr)
        return 130
    if result.stopped:
        print(f"jstyle: stopped: {result.stopped}; saved {output} and {side}", file=sys.stderr)
        return 1
    log(f"jstyle: wrote {output} and {side} (loss {result.delivered['total']:.4g}, "
        f"{result.timings['optimize_s']:.1f} s)")
    return 0


def _run_sharded_batch(config: Config, paths: list[str], folder: Path,
                       args: argparse.Namespace, log) -> int:
    """A batch with ``sharding: batch``: each group of same-sized photos optimised at once,
    the group split over every device (:func:`jstyle.sharding.stylize_batch`)."""
    if args.resume:
        raise JStyleError("--resume continues one image at a time; drop --resume, or set "
                          "sharding: none to resume the batch image by image")
    from jstyle.inputs import load_inputs
    from jstyle.memory import check_memory

    started = time.perf_counter()
    items = []
    for path in paths:  # every input checked before anything compiles
        item = dataclasses.replace(config, content=path,
                                   output=str(folder / f"{Path(path).stem}.png"))
        check_output(Path(item.output), [path, *item.style, item.init])
        estimates: list[int] = []
        inputs = load_inputs(item, check=lambda h, w, e=estimates, c=item:
                             e.append(check_memory(h, w, c)))
        items.append((item, inputs, estimates[0]))
    from jstyle.api import load_cached_weights, objective_and_solver

    weights = load_cached_weights(config.weights, log=log)
    objective, solver = objective_and_solver(config, weights.preprocessing)
    from jstyle.cache import enable_compilation_cache
    from jstyle.progress import ProgressBar
    from jstyle.sharding import BatchInterrupted, make_mesh, stylize_batch

    enable_compilation_cache()
    mesh = make_mesh("batch")
    groups: dict[tuple[int, ...], list] = {}
    for entry in items:
        groups.setdefault(entry[1].content.shape, []).append(entry)
    codes = []
    for shape, group in groups.items():
        log(f"jstyle: {len(group)} image(s) of {shape[1]}x{shape[0]} px over {mesh.size} "
            f"device(s), {config.iterations} iterations of {config.optimizer}")
        inits = [inputs.init for _, inputs, _ in group]
        init = inits[0] if isinstance(inits[0], str) else np.stack(inits)
        interrupted = False
        with ProgressBar(config.iterations, disable=args.quiet) as bar:
            try:
                results = stylize_batch(
                    weights.params, [inputs.content for _, inputs, _ in group],
                    group[0][1].styles, objective, solver, iterations=config.iterations,
                    init=init, seed=config.seed, noise_amplitude=config.noise_amplitude,
                    style_blend=config.style_blend, mesh=mesh,
                    on_progress=bar.update_batch)
            except BatchInterrupted as stop:
                results, interrupted = stop.results, True
        for (item, inputs, estimate), result in zip(group, results, strict=True):
            record = _record(item, inputs, weights, result, [], result.history, [],
                             result.evaluations, estimate, started)
            record["sharding"] = {"mode": "batch", "devices": mesh.size, "batch": len(group)}
            codes.append(_finish(Path(item.output), result, record, interrupted, log))
        if interrupted:
            return 130
    return max(codes, default=0)


def _peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    sys.exit(main())
