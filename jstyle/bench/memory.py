"""``python -m jstyle.bench.memory``: peak memory and time per iteration, with and without
rematerialisation (``remat``) or in tiles (``--tiles``), against
:func:`jstyle.memory.estimate_bytes`.

For each size and each setting it runs a few L-BFGS iterations of the paper's objective
on the real weights -- the command line's code path, :func:`jstyle.transfer.stylize` --
in a fresh process (:mod:`jstyle.bench.worker`, so each peak RSS is its own) and prints a
markdown table: size, remat, estimate, measured peak RSS, XLA's temporary buffers of the
compiled optimisation (``memory_analysis``), seconds per iteration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jstyle.bench.harness import _fmt, _worker, shape_for


def measure(sizes: list[int], iterations: int, timeout: float, log,
            tiles: list[int] | None = None) -> list[dict[str, Any]]:
    """One row per size and remat setting -- or, with ``tiles``, per size and tile size
    (0: the whole image; remat off) -- each measured in its own process."""
    rows = []
    settings = [(r, 0) for r in (False, True)] if not tiles else [(False, t) for t in tiles]
    for size in sizes:
        height, width = shape_for(size)
        for remat, tile in settings:
            log(f"{width}x{height} px, remat {'on' if remat else 'off'}, tiles {tile or 'none'}")
            spec = {"kind": "memory_jax", "height": height, "width": width,
                    "iterations": iterations, "remat": remat, "tile": tile}
            rows.append({"size": size, "height": height, "width": width, "remat": remat,
                         "tile": tile, **_worker(spec, timeout)})
    return rows


def tiles_markdown(rows: list[dict[str, Any]]) -> str:
    """Rows of a ``--tiles`` run as a table; the last column compares each tiled run with
    the same size's whole-image one."""
    mb = 2**20
    out = ["| image | tiles | estimate MB | peak RSS MB | s / iteration | "
           "peak RSS, time vs whole |", "| --- | --- | --- | --- | --- | --- |"]
    whole = {r["size"]: r for r in rows if not r.get("tile")}
    for r in rows:
        base = whole.get(r["size"], {})
        versus = ""
        if r.get("tile") and "peak_rss_mb" in r and "peak_rss_mb" in base:
            versus = ", ".join(f"{r[k] / base[k] - 1:+.0%}" for k in (
                "peak_rss_mb", "seconds_per_iteration"))
        out.append(
            f"| {r['width']}x{r['height']} | {r.get('tile') or 'none'} | "
            f"{_fmt(r.get('estimate_bytes') and r['estimate_bytes'] / mb, '.0f')} | "
            f"{_fmt(r.get('peak_rss_mb'), '.0f')} | "
            f"{_fmt(r.get('seconds_per_iteration'), '.2f')} | {versus} |")
    errors = [f"{r['size']} px tiles {r.get('tile')}: {r['error']}" for r in rows
              if "error" in r]
    if errors:
        out += ["", "Failed measurements: " + "; ".join(errors)]
    return "\n".join(out)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a table; the last column compares each size's remat run with its plain one."""
    mb = 2**20
    out = ["| image | remat | estimate MB | peak RSS MB | XLA temp MB | s / iteration | "
           "peak RSS, XLA temp, time vs no remat |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    plain = {r["size"]: r for r in rows if not r["remat"]}
    for r in rows:
        base = plain.get(r["size"], {})
        versus = ""
        if r["remat"] and "peak_rss_mb" in r and "peak_rss_mb" in base:
            versus = ", ".join(f"{r[k] / base[k] - 1:+.0%}" for k in (
                "peak_rss_mb", "xla_temp_bytes", "seconds_per_iteration"))
        out.append(
            f"| {r['width']}x{r['height']} | {'on' if r['remat'] else 'off'} | "
            f"{_fmt(r.get('estimate_bytes') and r['estimate_bytes'] / mb, '.0f')} | "
            f"{_fmt(r.get('peak_rss_mb'), '.0f')} | "
            f"{_fmt(r.get('xla_temp_bytes') and r['xla_temp_bytes'] / mb, '.0f')} | "
            f"{_fmt(r.get('seconds_per_iteration'), '.2f')} | {versus} |")
    errors = [f"{r['size']} px remat {r['remat']}: {r['error']}" for r in rows if "error" in r]
    if errors:
        out += ["", "Failed measurements: " + "; ".join(errors)]
    return "\n".join(out)


def parser() -> argparse.ArgumentParser:
    from jstyle.terminal import Parser

    p = Parser(prog="python -m jstyle.bench.memory", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024],
                   help="longest sides in pixels (images are 4:3)")
    p.add_argument("--iterations", type=int, default=5, help="L-BFGS iterations per run")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per measurement")
    p.add_argument("--tiles", type=int, nargs="+", metavar="PX",
                   help="compare tile sizes instead of remat (0: the whole image)")
    p.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    from jstyle import terminal

    return terminal.main(parser, _measure, argv, name="jstyle.bench.memory",
                         interrupted="interrupted; no results written")


def _measure(args: argparse.Namespace) -> int:
    rows = measure(args.sizes, args.iterations, args.timeout,
                   lambda msg: print(f"[bench.memory] {msg}", file=sys.stderr, flush=True),
                   args.tiles)
    if args.json:
        from jstyle.bench.harness import machine

        args.json.parent.mkdir(parents=True, exist_ok=True)
        command = "python -m jstyle.bench.memory " + " ".join(
            f"--sizes {' '.join(map(str, args.sizes))} --iterations {args.iterations}"
            f"{' --tiles ' + ' '.join(map(str, args.tiles)) if args.tiles else ''}".split())
        args.json.write_text(json.dumps({"machine": machine(), "command": command,
                                         "rows": rows}, indent=2))
    print(tiles_markdown(rows) if args.tiles else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
