"""The oneDNN convolutions (jstyle.onednn), bfloat16 and float32 by Winograd, against XLA's,
their derivatives through jstyle.vgg, and the one-line reasons when they cannot be built."""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import onednn
from jstyle.cache import kernels_dir
from jstyle.vgg import conv3x3, winograd_conv3x3

_DIMS = ("NHWC", "HWIO", "NHWC")


@pytest.fixture(scope="module")
def kernels() -> onednn.Kernels:
    """The kernel, built once into the user cache as a run would; skips where the machine
    has no compiler or no oneDNN (.ci/run installs both, so CI runs these), or where
    oneDNN has no bfloat16 convolution for the CPU (AVX2 only; built and loaded first)."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    if not Path("/usr/include/dnnl.hpp").is_file():
        pytest.skip("oneDNN's headers are not installed (apt-get install libdnnl-dev)")
    try:
        return onednn.load(kernels_dir())
    except onednn.NoKernelError as e:  # built and loaded; this CPU (AVX2 only) has no kernel
        pytest.skip(str(e))


def _reference(x, kernel):
    """XLA's convolution of the same bfloat16 numbers, in float32."""
    return jax.lax.conv_general_dilated(x.astype(jnp.float32), kernel.astype(jnp.float32),
                                        (1, 1), "SAME", dimension_numbers=_DIMS)


def _operands(rng, shape, channels):
    x = jnp.asarray(rng.standard_normal(shape), jnp.bfloat16)
    kernel = jnp.asarray(rng.standard_normal((3, 3, shape[-1], channels)) * 0.2, jnp.bfloat16)
    return x, kernel


def test_convolution_matches_xla_to_bfloat16_rounding(kernels, rng):
    x, kernel = _operands(rng, (2, 9, 13, 16), 32)
    got = jax.jit(onednn.conv3x3)(x, kernel)
    assert got.dtype == jnp.bfloat16 and got.shape == (2, 9, 13, 32)
    ref = _reference(x, kernel)
    # float32 accumulation, one rounding of each response: 2^-8 of its size
    np.testing.assert_allclose(np.asarray(got, np.float32), ref, rtol=8e-3,
                               atol=8e-3 * float(jnp.max(jnp.abs(ref))))


def _leading_axes_and_vmap(conv, x, kernel):
    flat = conv(x, kernel)
    mapped = jax.vmap(conv, in_axes=(0, None))(x[:, None], kernel)
    np.testing.assert_array_equal(mapped[:, 0], flat)
    stacked = conv(x.reshape(1, *x.shape), kernel)
    np.testing.assert_array_equal(stacked[0], flat)


def test_convolution_takes_leading_axes_and_vmap(kernels, rng):
    _leading_axes_and_vmap(onednn.conv3x3, *_operands(rng, (3, 6, 7, 8), 4))


def test_the_network_convolution_and_its_gradient_go_through_onednn(kernels, rng):
    x, kernel = _operands(rng, (1, 8, 10, 16), 16)
    text = jax.jit(conv3x3).lower(x, kernel).as_text()
    assert onednn.TARGET in text
    g = jnp.asarray(rng.standard_normal((1, 8, 10, 16)), jnp.float32)

    def loss(conv, x):
        return jnp.sum(conv(x, kernel).astype(jnp.float32) * g)

    ours = jax.grad(lambda x: loss(conv3x3, x))(x)
    assert onednn.TARGET in jax.jit(jax.grad(lambda x: loss(conv3x3, x))).lower(x).as_text()
    ref = jax.grad(lambda x: loss(_reference, x.astype(jnp.float32)))(x)
    np.testing.assert_allclose(np.asarray(ours, np.float32), ref, rtol=2e-2,
                               atol=1e-2 * float(jnp.max(jnp.abs(ref))))


def _flipped_matches_xla(conv, dtype, rng, c: int, o: int):
    """``conv(g, kernel, flipped=True)``: the input gradient's kernel made in the library,
    the same numbers as XLA's flip and transpose, so the same responses to the last bit,
    under vmap too, and kept apart from the kernel's own layout (a square kernel is both,
    read two ways). Returns g, the kernel, XLA's flipped kernel and the responses."""
    kernel = jnp.asarray(rng.standard_normal((3, 3, c, o)) * 0.1, dtype)
    g = jnp.asarray(rng.standard_normal((2, 10, 12, o)), dtype)
    turned = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    call = jax.jit(conv, static_argnums=2)
    explicit = call(g, turned, False)
    got = call(g, kernel, True)
    assert got.shape == (2, 10, 12, c) and got.dtype == dtype
    np.testing.assert_array_equal(got, explicit)
    if c == o:  # the same bytes unflipped are another kernel
        assert not np.array_equal(call(g, kernel, False), explicit)
        np.testing.assert_array_equal(call(g, kernel, True), explicit)
    batched = jax.vmap(lambda g: conv(g, kernel, True))(g[:, None])
    np.testing.assert_array_equal(batched[:, 0], explicit)
    return g, kernel, turned, got


@pytest.mark.parametrize("c, o", [(64, 32), (32, 32)])
def test_flipped_is_the_convolution_with_the_flipped_transposed_kernel(kernels, rng, c, o):
    _flipped_matches_xla(onednn.conv3x3, jnp.bfloat16, rng, c, o)


def test_each_kernel_is_laid_out_once_and_kept_apart(kernels, rng):
    """Several bfloat16 kernels of one shape in turn, then each again: the second round
    lays out nothing (oneDNN's layout of each is kept, found by the kernel's content) and
    gives the same responses."""
    x = jnp.asarray(rng.standard_normal((1, 12, 16, 48)), jnp.bfloat16)
    weights = [_operands(rng, (1, 12, 16, 48), 40)[1] for _ in range(3)]
    conv = jax.jit(onednn.conv3x3)
    first = [conv(x, k) for k in weights]
    made = onednn.transforms_made(kernels_dir())
    for k, got in zip(weights, first, strict=True):
        np.testing.assert_array_equal(conv(x, k + 0), got)  # another buffer, same numbers
    assert onednn.transforms_made(kernels_dir()) == made
    assert not np.array_equal(first[0], first[1])


def test_the_kernel_says_which_instructions_run_it(kernels):
    assert kernels.implementation and kernels.path.is_file()
    assert kernels.native == ("bf16" in kernels.implementation
                              or "amx" in kernels.implementation)


@pytest.fixture(scope="module")
def winograd(kernels) -> onednn.Kernels:
    """The kernels, where oneDNN has a float32 Winograd kernel for this CPU (AVX-512)."""
    if kernels.winograd is None:
        pytest.skip("oneDNN has no float32 Winograd kernel for this CPU")
    return kernels


def _float32(rng, shape, channels):
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, shape[-1], channels)) * 0.1, jnp.float32)
    return x, kernel


def _close(got, ref, tolerance):
    scale = float(jnp.max(jnp.abs(ref)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=0, atol=tolerance * scale)


@pytest.mark.parametrize("shape, channels", [((1, 24, 32, 64), 64), ((2, 13, 7, 32), 48),
                                             ((1, 6, 8, 128), 16)])
def test_winograd_matches_xla_to_a_few_parts_in_a_million(winograd, rng, shape, channels):
    x, kernel = _float32(rng, shape, channels)
    got = jax.jit(onednn.winograd_conv3x3)(x, kernel)
    assert got.dtype == jnp.float32 and got.shape == (*shape[:-1], channels)
    # Winograd's transforms round differently from the direct sum: ~1e-6 of the largest
    # response (measured); a wrong tap or channel would be off by its whole size.
    _close(got, _reference(x, kernel), 2e-5)


def test_winograd_takes_leading_axes_and_vmap(winograd, rng):
    _leading_axes_and_vmap(onednn.winograd_conv3x3, *_float32(rng, (3, 6, 7, 32), 32))


def test_winograd_keeps_each_kernel_apart(winograd, rng):
    """Several kernels of one shape in turn, then the first again: each transform is kept
    and found by the kernel's content (a call from another XLA thread with a third kernel
    once crashed oneDNN's shared scratchpad)."""
    x = jnp.asarray(rng.standard_normal((1, 12, 16, 64)), jnp.float32)
    kernels = [_float32(rng, (1, 12, 16, 64), 64)[1] for _ in range(4)]
    conv = jax.jit(onednn.winograd_conv3x3)
    first = [conv(x, k) for k in kernels]
    for k, got in zip(kernels, first, strict=True):
        _close(got, _reference(x, k), 2e-5)
    np.testing.assert_array_equal(conv(x, kernels[0]), first[0])
    # the same numbers in another buffer are the same kernel
    np.testing.assert_array_equal(conv(x, kernels[2] + 0.0), first[2])


@pytest.mark.parametrize("c, o", [(64, 32), (32, 32)])
def test_winograd_flipped_is_the_convolution_with_the_flipped_transposed_kernel(
        winograd, rng, c, o):
    g, kernel, turned, got = _flipped_matches_xla(onednn.winograd_conv3x3, jnp.float32, rng,
                                                  c, o)
    _close(got, _reference(g, turned), 2e-5)
    if c == o:
        _close(jax.jit(onednn.winograd_conv3x3)(g, kernel), _reference(g, kernel), 2e-5)


def test_prepared_kernels_are_the_ones_a_first_evaluation_uses(winograd, random_params):
    """:func:`winograd_jobs` names every transform the network's targets and first
    gradient make, so that after :func:`prepare_winograd` they make none; a second
    preparation finds them all kept, and a cancelled one stops before its first."""
    import threading

    from jstyle.objective import Objective, compute_targets, total_objective
    from jstyle.preprocessing import CAFFE

    # kernels nudged off the fixture's: nothing an earlier test transformed is kept
    params = jax.tree.map(lambda a: np.asarray(a, np.float32) * np.float32(1.001),
                          random_params)
    objective = Objective(content_layers=(("relu4_2", 1.0),),
                          style_layers=tuple((f"relu{b}_1", 0.2) for b in range(1, 6)),
                          content_weight=1.0, style_weight=1e3, tv_weight=0.0,
                          pooling="avg", preprocessing=CAFFE, convolutions="winograd")
    h, w = 40, 56  # not a multiple of 16: the poolings round down
    jobs = onednn.winograd_jobs(params, h, w, "relu5_1")
    assert len(jobs) == 2 * 12 and [j[2] for j in jobs] == [False] * 12 + [True] * 12
    stopped = threading.Event()
    stopped.set()
    assert onednn.prepare_winograd(kernels_dir(), jobs, stopped) == 0
    assert onednn.prepare_winograd(kernels_dir(), jobs) == 24
    assert onednn.prepare_winograd(kernels_dir(), jobs) == 0
    rng = np.random.default_rng(0)
    content, style, x = (rng.random((h, w, 3), np.float32) for _ in range(3))
    before = onednn.transforms_made(kernels_dir())
    targets = compute_targets(params, content, [style], objective)
    jax.block_until_ready(jax.grad(total_objective)(jnp.asarray(x), params, targets, objective))
    assert onednn.transforms_made(kernels_dir()) == before


def test_winograd_network_convolution_and_its_gradient(winograd, rng):
    x, kernel = _float32(rng, (1, 16, 20, 32), 64)
    g = jnp.asarray(rng.standard_normal((1, 16, 20, 64)), jnp.float32)

    def loss(conv, x):
        return jnp.sum(jnp.sin(conv(x, kernel)) * g)

    text = jax.jit(jax.grad(lambda x: loss(winograd_conv3x3, x))).lower(x).as_text()
    assert text.count(onednn.WINOGRAD_TARGET) >= 2  # forward and the input's gradient
    ours = jax.grad(lambda x: loss(winograd_conv3x3, x))(x)
    _close(ours, jax.grad(lambda x: loss(_reference, x))(x), 2e-5)
    # and the kernel's gradient (XLA's), for callers that differentiate the weights
    dk = jax.grad(lambda k: jnp.sum(winograd_conv3x3(x, k) * g))(kernel)
    _close(dk, jax.grad(lambda k: jnp.sum(_reference(x, k) * g))(kernel), 1e-5)


def test_winograd_leaves_the_rgb_layer_to_xla(winograd, rng):
    x, kernel = _float32(rng, (1, 8, 8, 3), 64)
    assert onednn.WINOGRAD_TARGET not in jax.jit(winograd_conv3x3).lower(x, kernel).as_text()


@pytest.fixture(scope="module")
def sorting(kernels):
    """The column sort, registered by :func:`jstyle.onednn.load` on every CPU."""
    assert onednn._SORTING[0]


def _columns(rng, shape):
    """Random columns with the values a sort must get right: ties, -0 beside +0, inf."""
    X = rng.standard_normal(shape).astype(np.float32)
    X[..., :4, 0] = 0.0
    X[..., 4:8, 0] = -0.0
    X[..., 8:10, 0] = np.inf
    X[..., 10:12, 0] = 1.5  # a tie of two ordinary values
    return jnp.asarray(X)


@pytest.mark.parametrize("shape", [(1000, 7), (2, 3, 40, 33), (12, 1), (3000, 70)])
def test_sort_columns_is_jnp_sort_with_its_gradient(sorting, rng, shape):
    X = _columns(rng, shape)
    np.testing.assert_array_equal(jax.jit(onednn.sort_columns)(X), jnp.sort(X, axis=-2))
    g = jnp.asarray(rng.standard_normal(shape), jnp.float32)

    def grad(sort):
        return jax.grad(lambda X: jnp.sum(jnp.where(jnp.isfinite(sort(X)), sort(X), 0) * g))(X)

    # stable, as jnp.sort: tied values route their gradients back in the same order
    np.testing.assert_array_equal(grad(onednn.sort_columns), grad(lambda X: jnp.sort(X, axis=-2)))


def test_sort_columns_under_vmap_and_outside_float32(sorting, rng):
    X = _columns(rng, (4, 50, 6))
    np.testing.assert_array_equal(jax.vmap(onednn.sort_columns)(X), jnp.sort(X, axis=-2))
    assert onednn.SORT_TARGET in jax.jit(onednn.sort_columns).lower(X).as_text()
    X64 = np.asarray(X, np.float64)  # other dtypes take jnp.sort
    np.testing.assert_array_equal(onednn.sort_columns(X64), np.sort(X64, axis=-2))


def _np_match_rows(X, T):
    """numpy's: T's values at the stable ranks of X's, row by row."""
    ranks = np.argsort(np.argsort(X, axis=-1, kind="stable"), axis=-1, kind="stable")
    return np.take_along_axis(T, ranks, axis=-1)


@pytest.mark.parametrize("shape", [(7, 1000), (2, 3, 33, 40), (1, 12), (70, 3000)])
def test_match_rows_puts_the_target_at_the_ranks(sorting, rng, shape):
    X = jnp.swapaxes(_columns(rng, shape[:-2] + shape[-2:][::-1]), -1, -2)  # ties, -0, inf
    T = jnp.sort(jnp.asarray(rng.standard_normal(shape), jnp.float32), axis=-1)
    matched = jax.jit(onednn.match_rows)(X, T)
    assert onednn.MATCH_TARGET in jax.jit(onednn.match_rows).lower(X, T).as_text()
    np.testing.assert_array_equal(matched, _np_match_rows(np.asarray(X), np.asarray(T)))
    np.testing.assert_array_equal(jax.vmap(onednn.match_rows)(X[None], T[None])[0], matched)
    # no derivative: the target a loss compares with is a constant
    assert float(jnp.abs(jax.grad(lambda X: jnp.sum(onednn.match_rows(X, T)))(X)).max()) == 0


def test_match_rows_without_the_kernel_is_the_same(sorting, rng, monkeypatch):
    X = jnp.swapaxes(_columns(rng, (300, 5)), -1, -2)
    T = jnp.sort(jnp.asarray(rng.standard_normal((5, 300)), jnp.float32), axis=-1)
    kernel = onednn.match_rows(X, T)
    monkeypatch.setattr(onednn, "_SORTING", [False])
    np.testing.assert_array_equal(onednn.match_rows(X, T), kernel)
    with pytest.raises(ValueError, match="differ in shape"):
        onednn.match_rows(X, T[:, :10])


@pytest.mark.parametrize("loss", ["histogram", "sliced_wasserstein"])
def test_the_sorting_losses_are_the_same_through_the_kernel(sorting, rng, monkeypatch, loss):
    """Value and gradient of each loss that sorts, with the kernel and with jnp.sort."""
    from jstyle import losses

    F = jnp.asarray(rng.standard_normal((2, 9, 11, 16)), jnp.float32)
    S = jnp.asarray(rng.standard_normal((7, 13, 16)), jnp.float32)
    if loss == "histogram":
        def value(F):
            return jnp.sum(losses.histogram_layer_loss(F, losses.histogram_target(S)))
    else:
        directions = losses.random_directions(jax.random.key(0), 16, 16)

        def value(F):
            target = losses.sliced_wasserstein_fixed_target(S, directions)
            return jnp.sum(losses.sliced_wasserstein_fixed_layer_loss(F, target))
    kernel = jax.value_and_grad(value)(F)
    monkeypatch.setattr(onednn, "_SORTING", [False])
    plain = jax.value_and_grad(value)(F)
    np.testing.assert_allclose(kernel[0], plain[0], rtol=1e-6)
    np.testing.assert_allclose(kernel[1], plain[1], rtol=1e-5, atol=1e-7)


def test_a_missing_compiler_is_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(onednn.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="no C.. compiler found"):
        onednn.build(tmp_path)


def _failing_compiler(monkeypatch, tmp_path, *stderr: str) -> None:
    """CXX set to a compiler that prints ``stderr``'s lines and fails."""
    fake = tmp_path / "fake-c++"
    fake.write_text("#!/bin/sh\n" + "".join(f"echo '{line}' >&2\n" for line in stderr)
                    + "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))


def test_missing_onednn_headers_name_the_package(monkeypatch, tmp_path):
    _failing_compiler(monkeypatch, tmp_path, "fatal error: dnnl.hpp: No such file or directory")
    with pytest.raises(RuntimeError, match="apt-get install libdnnl-dev"):
        onednn.build(tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.so"))  # no half-written library


def test_a_compile_error_is_named_by_its_first_error_line(monkeypatch, tmp_path):
    _failing_compiler(monkeypatch, tmp_path, "x.cc:3:1: error: f was not declared",
                      "    3 | f();", "      | ^")
    with pytest.raises(RuntimeError, match="did not compile: x.cc:3:1: error: f was not"):
        onednn.build(tmp_path / "cache")


def test_a_built_library_is_named_by_source_jaxlib_and_compiler(tmp_path):
    a = onednn.library_path(tmp_path, "g++")
    assert a == onednn.library_path(tmp_path, "g++")
    assert a != onednn.library_path(tmp_path, "clang++")
