"""precision: what runs where (jstyle.precision), and the bfloat16 objective against the
float32 one on the real weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest

from jstyle import onednn, precision
from jstyle.objective import Objective, compute_targets, network_params, total_objective


@pytest.fixture(autouse=True)
def fresh_resolution():
    precision.resolve.cache_clear()
    yield
    precision.resolve.cache_clear()


def _kernels(winograd):
    return lambda folder: onednn.Kernels(Path("x.so"), "brgconv:avx512_core_bf16", winograd)


def test_float32_takes_winograd_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(onednn, "load", _kernels("jit_wino_4x3:avx512_core"))
    got = precision.resolve("float32")
    assert got == ("float32", "float32", "onednn:jit_wino_4x3:avx512_core", None)
    assert got.convolutions == "winograd"
    assert precision.notice("float32") is None
    assert precision.record(got) == {"requested": "float32", "used": "float32",
                                     "convolutions": "onednn:jit_wino_4x3:avx512_core"}


@pytest.mark.parametrize("case", ["off", "spatial", "no kernel", "no build"])
def test_float32_runs_xla_otherwise_and_says_nothing(monkeypatch, case):
    def broken(folder):
        raise RuntimeError("oneDNN's headers or library are missing")

    monkeypatch.setattr(onednn, "load", broken if case == "no build" else
                        _kernels(None if case == "no kernel" else "jit_wino_4x3:avx512_core"))
    got = precision.resolve("float32", "spatial" if case == "spatial" else "none",
                            case != "off")
    assert got == ("float32", "float32", "xla", None) and got.convolutions == "xla"
    assert precision.notice("float32") is None


def test_bfloat16_is_never_winograd(monkeypatch):
    monkeypatch.setattr(onednn, "load", _kernels("jit_wino_4x3:avx512_core"))
    assert precision.resolve("bfloat16").convolutions == "xla"  # oneDNN's bfloat16 kernel


def test_spatial_sharding_on_a_cpu_falls_back_with_its_reason():
    got = precision.resolve("bfloat16", "spatial")
    assert got.used == "float32" and "split over devices" in got.reason
    assert precision.notice("bfloat16", "spatial").startswith(
        "jstyle: precision bfloat16 is not used here (")


def test_a_kernel_that_cannot_be_built_falls_back(monkeypatch):
    def broken(folder):
        raise RuntimeError("oneDNN's headers or library are missing")

    monkeypatch.setattr(onednn, "load", broken)
    got = precision.resolve("bfloat16")
    assert got.used == "float32" and "missing" in got.reason
    assert precision.record(got)["fallback"] == got.reason


def test_a_cpu_without_bfloat16_instructions_falls_back(monkeypatch):
    monkeypatch.setattr(onednn, "load",
                        lambda folder: onednn.Kernels(Path("x.so"), "brgconv:avx512_core"))
    got = precision.resolve("bfloat16")
    assert got.used == "float32" and "no bfloat16 instructions" in got.reason
    monkeypatch.setattr(onednn, "load",
                        lambda folder: onednn.Kernels(Path("x.so"), "brgconv:avx512_core_bf16"))
    precision.resolve.cache_clear()
    got = precision.resolve("bfloat16")
    assert got == ("bfloat16", "bfloat16", "onednn:brgconv:avx512_core_bf16", None)
    assert precision.record(got) == {"requested": "bfloat16", "used": "bfloat16",
                                     "convolutions": "onednn:brgconv:avx512_core_bf16"}


def test_bfloat16_objective_is_the_float32_one_to_a_few_percent(real_weights, rng):
    """The network in bfloat16 (oneDNN's convolutions where the kernel loads, else XLA's):
    the loss within 5% and the gradient pointing the same way; the optimiser's inputs and
    outputs stay float32."""
    precision.resolve("bfloat16")  # loads the kernel where this machine can
    base = Objective((("relu4_2", 1.0),), tuple((n, 0.2) for n in
                     ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")),
                     1.0, 1e3, 0.0, "avg", real_weights.preprocessing)
    content = rng.random((32, 48, 3), dtype=np.float32)
    style = rng.random((32, 48, 3), dtype=np.float32)
    x = rng.random((32, 48, 3), dtype=np.float32)
    out = {}
    for name in ("float32", "bfloat16"):
        objective = dataclasses.replace(base, precision=name)
        params = network_params(real_weights.params, objective)
        assert {p.dtype.name for p in jax.tree.leaves(params)} == {name}
        targets = jax.jit(compute_targets, static_argnums=3)(params, content, [style],
                                                              objective)
        value, grad = jax.jit(jax.value_and_grad(total_objective), static_argnums=3)(
            x, params, targets, objective)
        assert value.dtype == grad.dtype == np.float32
        out[name] = float(value), np.asarray(grad).ravel()
    (v32, g32), (v16, g16) = out["float32"], out["bfloat16"]
    assert abs(v16 - v32) / v32 < 0.05
    assert g16 @ g32 / np.linalg.norm(g16) / np.linalg.norm(g32) > 0.99


def test_winograd_objective_is_the_xla_one_to_a_few_parts_in_a_million(real_weights, rng):
    """The paper's objective with its float32 convolutions by Winograd (oneDNN) and by XLA:
    the loss and the gradient the same up to float32 rounding of another order of sums."""
    if precision.resolve("float32").convolutions != "winograd":
        pytest.skip("no float32 Winograd kernel on this machine")
    base = Objective((("relu4_2", 1.0),), tuple((n, 0.2) for n in
                     ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")),
                     1.0, 1e3, 0.0, "avg", real_weights.preprocessing)
    content, style, x = (rng.random((48, 64, 3), dtype=np.float32) for _ in range(3))
    out = {}
    for name in ("xla", "winograd"):
        objective = dataclasses.replace(base, convolutions=name)
        targets = jax.jit(compute_targets, static_argnums=3)(real_weights.params, content,
                                                              [style], objective)
        value, grad = jax.jit(jax.value_and_grad(total_objective), static_argnums=3)(
            x, real_weights.params, targets, objective)
        out[name] = float(value), np.asarray(grad).ravel()
    (v, g), (vw, gw) = out["xla"], out["winograd"]
    assert abs(vw - v) / v < 1e-5
    assert np.linalg.norm(gw - g) / np.linalg.norm(g) < 1e-4
