"""``python -m jstyle.bench losses``: what each style loss costs one evaluation of the
whole objective, against the Gram matrix's.

One loss-and-gradient evaluation of eq. 7 -- the content term at relu4_2 and the style
term at the paper's five layers (eq. 5), with every layer's style loss the one named
(:mod:`jstyle.style_losses`; ``gram`` is eqs. 3-4) -- on jstyle's default photo and
painting, from white noise, the network as a run computes it here (by Winograd where
the CPU has it). Each loss is timed in its own process (median of ``--repeats`` calls of
one compiled program after a warm-up), and its ratio to ``gram``'s is the table's point:
the network's cost is the same under every loss, so the ratio is what the loss adds.
``mrf`` and ``remd`` compare every pair of (sampled) positions and are expected to cost
more; their time is stated, not held to a bound.

References:
  Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks",
  CVPR 2016, eqs. 1-7. The other losses' papers: :mod:`jstyle.losses`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

#: The losses whose cost grows with the product of two position counts (all pairs of
#: sampled positions): stated, not held to :data:`BOUND`.
PAIRWISE = ("mrf", "remd")
#: How many times gram's evaluation any other loss may take (issue 14's bound).
BOUND = 1.5


# --- in the worker process --------------------------------------------------------------

def eval_style_loss(spec: dict) -> dict:
    """Median time of one jitted loss-and-gradient evaluation with ``spec["loss"]`` as the
    style loss at every style layer."""
    import jax

    from jstyle.bench.worker import _evaluation, _median_timed, _problem
    from jstyle.objective import compute_targets

    weights, objective, content, style, noise = _problem(spec["height"], spec["width"])
    objective = dataclasses.replace(objective, style_losses=((spec["loss"], 1.0),))
    params = weights.params
    t0 = time.perf_counter()
    targets = compute_targets(params, content, [style], objective)
    run = _evaluation(jax.device_put(noise), params, targets, objective)
    setup_s = time.perf_counter() - t0
    median, times = _median_timed(run, spec["repeats"], 1)
    return {"median_s": median, "times": times, "setup_s": setup_s, "loss": float(run()),
            "convolutions": objective.convolutions}


# --- in the harness -------------------------------------------------------------------

def run(args: argparse.Namespace, log) -> dict[str, Any]:
    """Every loss at every size, each in its own process."""
    from jstyle.bench.harness import _worker, machine, shape_for

    record: dict[str, Any] = {
        "machine": machine(), "command": " ".join(["python -m jstyle.bench", *sys.argv[1:]]),
        "objective": "eq. 7: content relu4_2, style relu1_1..relu5_1 (w_l 1/5) under each "
                     "style loss, alpha 1, beta 1e3, avg pooling, float32",
        "repeats": args.repeats, "sizes": {}}
    for size in args.sizes:
        height, width = shape_for(size)
        runs = {}
        for name in args.losses:
            log(f"losses {size} px: {name}")
            runs[name] = _worker({"kind": "eval_style_loss", "loss": name, "height": height,
                                  "width": width, "repeats": args.repeats}, args.timeout)
        record["sizes"][str(size)] = {"height": height, "width": width, "runs": runs}
    return record


def markdown(record: dict[str, Any]) -> str:
    """One table per size: each loss's time and its ratio to gram's, against the bound."""
    m = record["machine"]
    out = [f"CPU: {m.get('cpu')} ({m.get('cores')} cores; {', '.join(m.get('isa', []))}); "
           f"jax {m.get('jax')}; {record['objective']}; median of {record['repeats']}", ""]
    for entry in record["sizes"].values():
        runs = entry["runs"]
        gram = runs.get("gram", {}).get("median_s")
        out += [f"**{entry['width']}x{entry['height']} px**", "",
                f"| style loss | ms per evaluation | / gram's | within {BOUND}x gram's |",
                "| --- | --- | --- | --- |"]
        for name, r in runs.items():
            if "median_s" not in r:
                out.append(f"| {name} | failed: {r.get('error')} | | |")
                continue
            ratio = r["median_s"] / gram if gram else None
            verdict = ("n/a" if ratio is None else "stated" if name in PAIRWISE
                       else "yes" if ratio <= BOUND else "**no**")
            out.append(f"| {name} | {r['median_s'] * 1e3:.0f} | "
                       f"{'n/a' if ratio is None else f'{ratio:.2f}'} | {verdict} |")
        out.append("")
    return "\n".join(out)


def parser() -> argparse.ArgumentParser:
    from jstyle.options import STYLE_LOSSES
    from jstyle.terminal import Parser

    p = Parser(prog="python -m jstyle.bench losses", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512],
                   help="longest sides in pixels (images are 4:3)")
    p.add_argument("--losses", nargs="+", default=list(STYLE_LOSSES), choices=STYLE_LOSSES,
                   metavar="NAME", help=f"of: {', '.join(STYLE_LOSSES)} (gram first)")
    p.add_argument("--repeats", type=int, default=3, help="timed evaluations per loss")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per loss and size")
    p.add_argument("--out", type=Path, default=Path("out/bench"),
                   help="folder for losses.json")
    return p


def main(argv: list[str]) -> int:
    from jstyle import terminal

    return terminal.main(parser, _losses_main, argv, name="jstyle.bench",
                         interrupted="interrupted; no results written")


def _losses_main(args: argparse.Namespace) -> int:
    from jstyle.bench.harness import measured

    measured(args, [], run, markdown, "losses.json")
    print(f"\nwrote {args.out / 'losses.json'}", file=sys.stderr)
    return 0
