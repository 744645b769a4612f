"""``python -m jstyle.bench quality``: the loss of the image a user receives, against time.

Every solver starts from the same white noise on the same objective (the paper's as eqs.
1-7 write it: the network as trained, alpha/beta = 1e-3, average pooling; jstyle's
default photo and generated painting) and is judged by the loss of its *delivered*
image -- clipped to [0, 1] and rounded to 8 bits, as a PNG stores it -- not by the
loss of its internal float image:

- jstyle's solvers, run through :func:`jstyle.transfer.stylize` (the command line's
  code path), one iteration per compiled call so every iterate is seen;
- scipy's ``L-BFGS-B`` with the pixel box on the same jitted objective (float64 on
  scipy's side, float32 in the objective);
- ``torch.optim.LBFGS`` on the PyTorch reference (:mod:`jstyle.bench.torch_reference`),
  unbounded and clamped at the end as its users do, with no line search (one evaluation
  per iteration, as pastiche and jcjohnson/neural-style run it) and with strong Wolfe;
- on request (``--solvers``), jstyle's and torch's with the network in bfloat16
  (``precision: bfloat16``), their delivered images judged, like every other, in float32
  with XLA's convolutions; and jstyle's with XLA's convolutions where its default is
  Winograd's (oneDNN).

Each run is a fresh process (:mod:`jstyle.bench.worker`). The delivered loss of the
iterates is computed after the run, outside its timing. Printed: a table of delivered
loss at 50, 100 and 200 evaluations, the seconds each solver needs to reach the loss
torch delivers after 100 iterations, and the delivered image's pixel noise over the
painting's (:func:`jstyle.metrics.noise_ratio`); written: ``quality.json`` and
``quality.png`` (delivered loss against seconds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The solvers measured by default, by name: how each is run.
SOLVERS: dict[str, dict[str, Any]] = {
    "jstyle backtracking": {"kind": "quality_jax", "backend": "jstyle",
                            "line_search": "backtracking", "bounds": "box"},
    "jstyle none": {"kind": "quality_jax", "backend": "jstyle", "line_search": "none",
                    "bounds": "box"},
    "jaxopt L-BFGS-B zoom": {"kind": "quality_jax", "backend": "jaxopt", "line_search": "zoom",
                             "bounds": "box"},
    "jaxopt L-BFGS-B backtracking": {"kind": "quality_jax", "backend": "jaxopt",
                                     "line_search": "backtracking", "bounds": "box"},
    "jstyle unbounded": {"kind": "quality_jax", "backend": "jstyle",
                         "line_search": "backtracking", "bounds": "none"},
    "jaxopt unbounded zoom": {"kind": "quality_jax", "backend": "jaxopt", "line_search": "zoom",
                              "bounds": "none"},
    "adam": {"kind": "quality_jax", "optimizer": "adam", "bounds": "box"},
    "scipy L-BFGS-B": {"kind": "quality_scipy"},
    "torch none": {"kind": "quality_torch", "line_search": None},
    "torch strong-wolfe": {"kind": "quality_torch", "line_search": "strong_wolfe"},
    # the network in bfloat16 (precision: bfloat16), judged like the rest in float32
    "jstyle backtracking bfloat16": {"kind": "quality_jax", "backend": "jstyle",
                                     "line_search": "backtracking", "bounds": "box",
                                     "precision": "bfloat16"},
    "torch none bfloat16": {"kind": "quality_torch", "line_search": None,
                            "precision": "bfloat16"},
    # the float32 network's convolutions by XLA where Winograd (oneDNN) is the default
    "jstyle backtracking xla": {"kind": "quality_jax", "backend": "jstyle",
                                "line_search": "backtracking", "bounds": "box",
                                "winograd": False},
}
DEFAULT_SOLVERS = ("jstyle backtracking", "jstyle none", "jaxopt L-BFGS-B zoom",
                   "jstyle unbounded", "scipy L-BFGS-B", "torch none", "torch strong-wolfe")
#: Evaluation counts the table reports the delivered loss at.
CHECKPOINTS = (50, 100, 200)
#: torch's iterations whose delivered loss is the time-to-reach target.
TARGET_ITERATIONS = 100


# --- in the worker process --------------------------------------------------------------

def _delivered_losses(objective, params, content, style, images: list[np.ndarray]) -> list:
    """Eq. 7 of each image as a PNG stores it, with jstyle's jitted objective."""
    import jax

    from jstyle.objective import compute_targets, loss_terms
    from jstyle.preprocessing import delivered

    targets = compute_targets(params, content, [style], objective)
    terms = jax.jit(lambda x: loss_terms(x, params, targets, objective))
    return [{k: float(v) for k, v in terms(delivered(x)).items() if "/" not in k}
            for x in images]


def _finish(points: list[dict], images: list[np.ndarray], problem, extra: dict) -> dict:
    import dataclasses

    from jstyle.metrics import noise_ratio

    weights, objective, content, style, _ = problem
    # every solver alike: float32, XLA's convolutions
    judge = dataclasses.replace(objective, precision="float32", convolutions="xla")
    losses = _delivered_losses(judge, weights.params, content, style, images)
    for point, loss in zip(points, losses, strict=True):
        point["delivered"] = loss["total"]
        point["delivered_style"] = loss["style"]
        point["delivered_content"] = loss["content"]
    return {"points": points, "noise_ratio": noise_ratio(images[-1], style),
            "range": [float(np.min(images[-1])), float(np.max(images[-1]))], **extra}


def _keep(iteration: int, evaluations: int, last: int | None) -> bool:
    """Which iterates to score: every one early on, then each fifth, and those that cross a
    checkpoint (so the table reads exact counts)."""
    crossed = last is not None and any(last < c <= evaluations for c in CHECKPOINTS)
    return iteration <= 20 or iteration % 5 == 0 or crossed


def quality_jax(spec: dict) -> dict:
    """One of jstyle's solvers through :func:`jstyle.transfer.stylize`, until
    ``max_evaluations`` evaluations."""
    from jstyle.bench.worker import _problem
    from jstyle.optimize import make_solver
    from jstyle.transfer import Interrupted, stylize

    problem = _problem(spec["height"], spec["width"], spec.get("precision", "float32"),
                       spec.get("seed", 0), spec.get("winograd", True))
    weights, objective, content, style, noise = problem
    solver = make_solver(spec.get("optimizer", "lbfgs"), lbfgs_backend=spec.get("backend",
                         "jstyle"), lbfgs_memory=spec["memory"],
                         line_search=spec.get("line_search"), bounds=spec["bounds"],
                         learning_rate=spec.get("learning_rate", 0.02))
    points, images, last = [], [], [None]
    t0 = time.perf_counter()

    def heard(progress):
        evaluations = progress.evaluations
        if _keep(progress.iteration, evaluations, last[0]):
            points.append({"iteration": progress.iteration, "evaluations": evaluations,
                           "seconds": time.perf_counter() - t0,
                           "loss": progress.history[-1]})
            images.append(np.asarray(progress.image))
        last[0] = evaluations
        if evaluations >= spec["max_evaluations"]:
            raise KeyboardInterrupt  # stylize stops and hands back its result

    # One iteration costs at least one evaluation: max_evaluations iterations reach it.
    try:
        result = stylize(weights.params, content, [style], objective, solver,
                         iterations=spec["max_evaluations"], init=noise, save_every=1,
                         on_progress=heard)
    except Interrupted as stop:
        result = stop.result
    t = result.timings
    return _finish(points, images, problem, {
        "compile_s": t["compile_s"], "setup_s": t["setup_s"],
        "seconds_per_evaluation": t["optimize_s"] / max(result.evaluations, 1)})


def quality_scipy(spec: dict) -> dict:
    """scipy's L-BFGS-B, in the pixel box, on jstyle's jitted objective."""
    import jax
    import scipy.optimize

    from jstyle.bench.worker import _problem
    from jstyle.objective import compute_targets, total_objective

    problem = _problem(spec["height"], spec["width"], seed=spec.get("seed", 0))
    weights, objective, content, style, noise = problem
    t0 = time.perf_counter()
    targets = compute_targets(weights.params, content, [style], objective)
    step = jax.jit(jax.value_and_grad(total_objective), static_argnums=3)
    shape = noise.shape
    compiled = step.lower(noise, weights.params, targets, objective).compile()
    compile_s = time.perf_counter() - t0
    count = [0]

    def fun(x: np.ndarray):
        count[0] += 1
        value, grad = compiled(x.reshape(shape).astype(np.float32), weights.params, targets)
        return float(value), np.asarray(grad, np.float64).ravel()

    points, images = [], []
    pause = [0.0]

    def callback(intermediate_result):
        t = time.perf_counter()
        if _keep(len(points) + 1, count[0], points[-1]["evaluations"] if points else None):
            points.append({"iteration": len(points) + 1, "evaluations": count[0],
                           "seconds": t - t0 - pause[0],
                           "loss": float(intermediate_result.fun)})
            images.append(intermediate_result.x.reshape(shape).astype(np.float32))
        pause[0] += time.perf_counter() - t

    scipy.optimize.minimize(fun, noise.astype(np.float64).ravel(), jac=True, method="L-BFGS-B",
                            bounds=[(0.0, 1.0)] * noise.size, callback=callback,
                            options={"maxcor": spec["memory"], "maxfun": spec["max_evaluations"],
                                     "maxiter": 10 * spec["max_evaluations"], "ftol": 0.0,
                                     "gtol": 0.0})
    return _finish(points, images, problem, {"compile_s": compile_s, "setup_s": 0.0})


def quality_torch(spec: dict) -> dict:
    """``torch.optim.LBFGS`` on the PyTorch reference, unbounded, clamped when delivered."""
    from jstyle.bench.torch_reference import torch_lbfgs
    from jstyle.bench.worker import _problem, _torch_objective

    problem = _problem(spec["height"], spec["width"], seed=spec.get("seed", 0))
    _, module, noise = _torch_objective(spec)
    points, images = [], []
    last = [None]

    def heard(iteration, image, evaluations, seconds):
        if _keep(iteration, evaluations, last[0]) or iteration == TARGET_ITERATIONS:
            points.append({"iteration": iteration, "evaluations": evaluations,
                           "seconds": seconds, "loss": float("nan")})
            images.append(image)
        last[0] = evaluations

    out = torch_lbfgs(module, noise, spec["max_evaluations"], memory=spec["memory"],
                      line_search=spec["line_search"], on_iteration=heard)
    for point in points:
        point["loss"] = out["history"][point["iteration"] - 1]
    return _finish(points, images, problem, {"compile_s": 0.0, "setup_s": 0.0})


# --- in the harness -------------------------------------------------------------------

def at_evaluations(points: list[dict], count: int) -> float | None:
    """Delivered loss of the last scored iterate reached within ``count`` evaluations."""
    within = [p for p in points if p["evaluations"] <= count]
    return within[-1]["delivered"] if within else None


def seconds_to(points: list[dict], loss: float) -> float | None:
    """Seconds until the delivered loss is at most ``loss`` (None: never)."""
    for p in points:
        if p["delivered"] <= loss:
            return p["seconds"]
    return None


def ratios_over_starts(starts: list[dict[str, dict]], name: str,
                       reference: str = "scipy L-BFGS-B") -> dict[int, list[float | None]]:
    """For each checkpoint after the first: ``name``'s delivered loss over ``reference``'s,
    one ratio per start (None where either run failed or did not get there)."""
    out: dict[int, list[float | None]] = {}
    for count in CHECKPOINTS[1:]:
        row = []
        for runs in starts:
            a, b = (runs.get(n, {}).get("points") for n in (name, reference))
            x = a and at_evaluations(a, count)
            y = b and at_evaluations(b, count)
            row.append(x / y if x and y else None)
        out[count] = row
    return out


def run(args: argparse.Namespace, log) -> dict[str, Any]:
    """Every solver at every size, each in its own process; with ``--starts`` above one,
    every solver again from the further noise starts (seeds 1, 2, ...)."""
    from jstyle.bench.harness import _worker, machine, shape_for

    record: dict[str, Any] = {
        "machine": machine(), "command": " ".join(["python -m jstyle.bench", *sys.argv[1:]]),
        "objective": "eqs. 1-7: the network as trained, alpha 1, beta 1e3, avg pooling, "
                     "white-noise start (uniform, seed 0), jstyle's default images",
        "memory": args.memory, "max_evaluations": args.evaluations, "sizes": {},
        "starts": args.starts,
    }
    for size in args.sizes:
        height, width = shape_for(size)
        starts = []
        for seed in range(args.starts):
            runs = {}
            for name in args.solvers:
                log(f"quality {size} px: {name}" + (f", start {seed}" if seed else ""))
                spec = {**SOLVERS[name], "height": height, "width": width,
                        "memory": args.memory, "max_evaluations": args.evaluations,
                        "seed": seed}
                result = _worker(spec, args.timeout)
                if seed and "points" in result:  # of further starts, the losses alone
                    result = {"points": [{k: p[k] for k in ("evaluations", "delivered")}
                                         for p in result["points"]]}
                runs[name] = result
            starts.append(runs)
        record["sizes"][str(size)] = {"height": height, "width": width, "runs": starts[0]}
        if args.starts > 1:
            record["sizes"][str(size)]["starts"] = starts
    return record


def _targets(runs: dict[str, dict]) -> dict[str, tuple[float, float]]:
    """For each torch run: (delivered loss after TARGET_ITERATIONS, its seconds there)."""
    out = {}
    for name, r in runs.items():
        if name.startswith("torch") and "points" in r:
            point = next((p for p in r["points"] if p["iteration"] == TARGET_ITERATIONS), None)
            if point:
                out[name] = (point["delivered"], point["seconds"])
    return out


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(record: dict[str, Any]) -> str:
    """The record as one table per size."""
    m = record["machine"]
    out = [f"CPU: {m.get('cpu')} ({m.get('cores')} cores); {record['objective']}; "
           f"L-BFGS memory {record['memory']}", ""]
    for _size, entry in record["sizes"].items():
        runs = entry["runs"]
        targets = _targets(runs)
        scipy = runs.get("scipy L-BFGS-B", {}).get("points")
        head = (["solver"] + [f"delivered @{c} ev" for c in CHECKPOINTS]
                + ([f"/ scipy @{c}" for c in CHECKPOINTS[1:]] if scipy else [])
                + [f"s to {t}@{TARGET_ITERATIONS} it (x its time)" for t in targets]
                + ["noise / painting's", "range"])
        out += [f"**{entry['width']}x{entry['height']} px** (seconds include compilation)", "",
                "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for name, r in runs.items():
            if "points" not in r:
                out.append(f"| {name} | failed: {r.get('error')} |")
                continue
            cells = [name] + [_fmt(at_evaluations(r["points"], c), ".4g") for c in CHECKPOINTS]
            if scipy:
                for c in CHECKPOINTS[1:]:
                    a, b = at_evaluations(r["points"], c), at_evaluations(scipy, c)
                    cells.append(_fmt(a / b if a and b else None, ".2f"))
            for loss, seconds in targets.values():
                reach = seconds_to(r["points"], loss)
                cells.append("never" if reach is None else
                             f"{reach:.1f} ({reach / seconds:.2f})")
            cells += [_fmt(r.get("noise_ratio"), ".2f"),
                      f"{r['range'][0]:.2f}..{r['range'][1]:.2f}"]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        starts = entry.get("starts")
        if starts and scipy:
            out += _starts_table(entry, starts)
    return "\n".join(out)


def _starts_table(entry: dict[str, Any], starts: list[dict[str, dict]]) -> list[str]:
    """Each solver's delivered loss over scipy's at every start, and their median: where
    two solvers' paths part after a few dozen steps, one start says little at the 1% level."""
    head = ["solver"] + [f"/ scipy @{c}: each start, median" for c in CHECKPOINTS[1:]]
    out = [f"**{entry['width']}x{entry['height']} px, {len(starts)} starts** (seeds 0-"
           f"{len(starts) - 1}; delivered loss over scipy's at the same start)", "",
           "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name in starts[0]:
        if name == "scipy L-BFGS-B":
            continue
        cells = [name]
        for row in ratios_over_starts(starts, name).values():
            known = [r for r in row if r is not None]
            cells.append(", ".join(_fmt(r, ".3f") for r in row) + "; median " +
                         _fmt(float(np.median(known)) if known else None, ".3f"))
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]


def plot(record: dict[str, Any], path: Path) -> None:
    """Delivered loss against seconds, one panel per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(record["sizes"].items())
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), dpi=110,
                             squeeze=False)
    for ax, (_, entry) in zip(axes[0], sizes, strict=True):
        for name, r in entry["runs"].items():
            if "points" in r:
                ax.plot([p["seconds"] for p in r["points"]],
                        [p["delivered"] for p in r["points"]], label=name,
                        linestyle="--" if not name.startswith("jstyle") else "-")
        ax.set(yscale="log", xlabel="seconds (compilation included)",
               ylabel="loss of the delivered 8-bit image",
               title=f"{entry['width']}x{entry['height']} px")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def parser() -> argparse.ArgumentParser:
    from jstyle.terminal import Parser

    p = Parser(prog="python -m jstyle.bench quality",
                                description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256],
                   help="longest sides in pixels (images are 4:3)")
    p.add_argument("--evaluations", type=int, default=200,
                   help="objective evaluations each solver gets")
    p.add_argument("--solvers", nargs="+", default=list(DEFAULT_SOLVERS), choices=list(SOLVERS),
                   metavar="NAME", help=f"of: {', '.join(SOLVERS)}")
    p.add_argument("--memory", type=int, default=20, help="L-BFGS history size (all)")
    p.add_argument("--starts", type=int, default=1,
                   help="white-noise starts (seeds 0, 1, ...): above 1, a table of each "
                        "solver's ratio to scipy at every start and its median")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    p.add_argument("--out", type=Path, default=Path("out/bench"),
                   help="folder for quality.json and quality.png")
    return p


def main(argv: list[str]) -> int:
    from jstyle import terminal

    return terminal.main(parser, _quality, argv, name="jstyle.bench",
                         interrupted="interrupted; no results written")


def _quality(args: argparse.Namespace) -> int:
    from jstyle.bench.harness import measured

    needs = ["scipy", "matplotlib"] + (["torch"] if any(
        SOLVERS[s]["kind"] == "quality_torch" for s in args.solvers) else [])
    record = measured(args, needs, run, markdown, "quality.json")
    plot(record, args.out / "quality.png")
    print(f"\nwrote {args.out / 'quality.json'} and {args.out / 'quality.png'}", file=sys.stderr)
    return 0
