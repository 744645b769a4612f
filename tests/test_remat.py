"""Rematerialisation (``remat``): the same responses, loss and gradients; only the program differs.

Also the convolution's derivative under ``vmap``, which the data-parallel mode relies on.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import layers
from jstyle.objective import Objective, compute_targets, loss_terms, total_objective
from jstyle.preprocessing import CAFFE
from jstyle.vgg import VGG19, conv3x3, extract_features

PAPER = Objective(
    content_layers=tuple((n, 1.0) for n in layers.PAPER_CONTENT_LAYERS),
    style_layers=tuple((n, 0.2) for n in layers.PAPER_STYLE_LAYERS),
    content_weight=1.0, style_weight=1e3, tv_weight=0.0, pooling="avg", preprocessing=CAFFE)


def test_remat_responses_are_the_same(random_params, rng):
    x = jnp.asarray(rng.standard_normal((2, 32, 32, 3)) * 50, jnp.float32)
    for pooling in ("avg", "max"):
        plain = extract_features(random_params, x, layers.LAYERS, pooling)
        remat = extract_features(random_params, x, layers.LAYERS, pooling, remat=True)
        assert list(remat) == list(plain)
        for name in plain:
            np.testing.assert_allclose(remat[name], plain[name], rtol=1e-6, atol=1e-6)


def test_remat_parameters_are_the_same_tree():
    x = jnp.zeros((1, 32, 32, 3))
    plain = VGG19(outputs=("relu3_1",)).init(jax.random.key(3), x)["params"]
    remat = VGG19(outputs=("relu3_1",), remat=True).init(jax.random.key(3), x)["params"]
    assert jax.tree.structure(remat) == jax.tree.structure(plain)
    assert sorted(remat) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]
    for a, b in zip(jax.tree.leaves(remat), jax.tree.leaves(plain), strict=True):
        np.testing.assert_array_equal(a, b)


def test_remat_loss_and_gradient_are_the_same(random_params, rng):
    content, style, image = (jnp.asarray(rng.random((32, 48, 3)), jnp.float32) for _ in range(3))
    # Three blocks (two with a pooling between them) keep the compilations short.
    shallow = dataclasses.replace(PAPER, content_layers=(("relu2_2", 1.0),),
                                  style_layers=(("relu1_1", 0.5), ("relu3_1", 0.5)))
    remat = dataclasses.replace(shallow, remat=True)
    targets = compute_targets(random_params, content, [style], shallow)
    value_and_grad = jax.jit(jax.value_and_grad(total_objective), static_argnums=3)
    v0, g0 = value_and_grad(image, random_params, targets, shallow)
    v1, g1 = value_and_grad(image, random_params, targets, remat)
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    np.testing.assert_allclose(g1, g0, rtol=1e-5, atol=1e-5 * float(jnp.abs(g0).max()))
    terms = loss_terms(image, random_params, targets, remat)
    np.testing.assert_allclose(terms["total"], v0, rtol=1e-6)


def test_remat_recomputes_each_block_in_the_backward_pass(random_params):
    """Forward: 13 convolutions up to relu5_1; gradient: 13 more; with remat, the forward of
    every block once more (13), and one checkpoint per block (5)."""
    x = jnp.zeros((24, 24, 3))
    targets = jax.eval_shape(lambda: compute_targets(random_params, x, [x], PAPER))

    def jaxpr(objective):
        grad = jax.grad(total_objective)
        return str(jax.make_jaxpr(grad, static_argnums=3)(x, random_params, targets, objective))

    plain, remat = jaxpr(PAPER), jaxpr(dataclasses.replace(PAPER, remat=True))
    assert plain.count("conv_general_dilated") == 26 and "remat" not in plain
    assert remat.count("conv_general_dilated") == 39 and remat.count("remat") == 5


def test_image_gradient_under_vmap_keeps_one_kernel(rng):
    """The image's gradient never computes the kernel's, so under vmap the kernel stays one
    array (no per-image copies, no grouped convolution); the kernel's gradient, when asked
    for, is still right."""
    x = jnp.asarray(rng.standard_normal((3, 1, 8, 8, 4)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 4, 5)), jnp.float32)

    def f(x, k):
        return jnp.sum(jnp.sin(conv3x3(x, k)))

    def plain(x, k):
        y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jnp.sin(y))

    batched = jax.vmap(jax.grad(f), (0, None))
    assert "feature_group_count=1" in str(jax.make_jaxpr(batched)(x, k))
    assert "feature_group_count=3" not in str(jax.make_jaxpr(batched)(x, k))
    np.testing.assert_allclose(batched(x, k), jax.vmap(jax.grad(plain), (0, None))(x, k),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.grad(f, 1)(x[0], k), jax.grad(plain, 1)(x[0], k),
                               rtol=1e-4, atol=1e-4)
