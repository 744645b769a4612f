"""Spatial control (Gatys et al. 2017, sec. 4.1): guided Gram matrices, masks, and the wiring."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jstyle import losses
from jstyle.config import resolve
from jstyle.inputs import prepare_inputs
from jstyle.objective import Objective, compute_targets, layer_masks, loss_terms
from jstyle.preprocessing import CAFFE
from tests.helpers import one_line_error

OBJECTIVE = Objective(
    content_layers=(("relu2_2", 1.0),),
    style_layers=(("relu1_1", 0.5), ("relu2_1", 0.5)),
    content_weight=1.0,
    style_weight=1e3,
    tv_weight=0.0,
    pooling="avg",
    preprocessing=CAFFE,
)


def _halves(height: int, width: int) -> np.ndarray:
    """Two masks: the left half and the right half of the image."""
    left = np.zeros((height, width), np.float32)
    left[:, : width // 2] = 1.0
    return np.stack([left, 1.0 - left])


def test_one_all_ones_mask_is_eq_4(rng):
    F = jnp.asarray(rng.random((6, 5, 4), np.float32))
    A = jnp.asarray(rng.random((4, 4), np.float32))
    guided = losses.guided_style_layer_loss(F, A[None], jnp.ones((1, 6, 5)))
    np.testing.assert_allclose(guided, losses.style_layer_loss(F, A), rtol=1e-6)


def test_guided_gradient_matches_the_analytic_derivative(rng):
    """Eq. 6 for a region, weighted M_r / M: dE/dF = T o (F o T)(G_r - A_r) / (N^2 M M_r),
    summed over the regions."""
    h, w, n = 5, 4, 3
    F = jnp.asarray(rng.random((h, w, n), np.float32))
    T = jnp.asarray(rng.random((2, h, w), np.float32))
    A = jnp.asarray(rng.random((2, n, n), np.float32))
    A = A + jnp.swapaxes(A, -1, -2)
    grad = jax.grad(losses.guided_style_layer_loss)(F, A, T)
    expected = np.zeros((h, w, n), np.float32)
    for r in range(2):
        X = np.asarray(F * T[r][..., None]).reshape(h * w, n)
        G = X.T @ X
        area = float(np.sum(T[r]))
        dX = X @ (G - np.asarray(A[r])) / (n**2 * h * w * area)
        expected += np.asarray(T[r])[..., None] * dX.reshape(h, w, n)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-7)


def test_disjoint_regions_add_up(rng):
    F = jnp.asarray(rng.random((4, 6, 3), np.float32))
    A = jnp.asarray(rng.random((2, 3, 3), np.float32))
    T = jnp.asarray(_halves(4, 6))
    both = losses.guided_style_layer_loss(F, A, T)
    apart = sum(losses.guided_style_layer_loss(F, A[r : r + 1], T[r : r + 1]) for r in range(2))
    np.testing.assert_allclose(both, apart, rtol=1e-6)


def test_empty_region_contributes_nothing(rng):
    F = jnp.asarray(rng.random((4, 4, 3), np.float32))
    A = jnp.asarray(rng.random((2, 3, 3), np.float32))
    T = jnp.stack([jnp.ones((4, 4)), jnp.zeros((4, 4))])
    value = losses.guided_style_layer_loss(F, A, T)
    assert np.isfinite(value)
    np.testing.assert_allclose(value, losses.guided_style_layer_loss(F, A[:1], T[:1]), rtol=1e-6)


def test_dividing_the_image_keeps_eq_4s_scale(rng):
    """Two halves that each match the unguided Gram statistics score like eq. 4 does: the
    regions are weighted by their share of the image, not summed at full weight."""
    F = jnp.asarray(rng.random((8, 8, 3), np.float32))
    A = jnp.zeros((3, 3))
    T = jnp.asarray(_halves(8, 8))
    halves = losses.guided_style_layer_loss(F, jnp.zeros((2, 3, 3)), T)
    per_half = [losses.style_layer_loss(F[:, :4], A), losses.style_layer_loss(F[:, 4:], A)]
    np.testing.assert_allclose(halves, 0.5 * sum(per_half), rtol=1e-5)
    assert np.all(np.isfinite(jax.grad(losses.guided_style_layer_loss)(F, A, T)))


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_layer_masks_follow_the_networks_pooling(rng, factor):
    """Masks reach layer l's resolution as the network's 2x2 average pooling takes the image
    there, odd rows and columns dropped alike."""
    masks = rng.random((2, 37, 29)).astype(np.float32)
    x = jnp.asarray(masks)[..., None]
    for _ in range(int(np.log2(factor))):
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    np.testing.assert_allclose(layer_masks(jnp.asarray(masks), factor), x[..., 0], atol=1e-6)


def test_a_mask_covering_everything_is_the_unguided_objective(random_params, rng):
    content = jnp.asarray(rng.random((32, 24, 3), np.float32))
    style = jnp.asarray(rng.random((32, 24, 3), np.float32))
    image = jnp.asarray(rng.random((32, 24, 3), np.float32))
    plain = compute_targets(random_params, content, [style], OBJECTIVE)
    guided = compute_targets(random_params, content, [style], OBJECTIVE,
                             masks=jnp.ones((1, 32, 24)))
    a = loss_terms(image, random_params, plain, OBJECTIVE)
    b = loss_terms(image, random_params, guided, OBJECTIVE)
    for key in ("total", "style/relu1_1", "style/relu2_1"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5)


def test_each_region_is_compared_with_its_own_style(random_params, rng):
    """Style r's Gram target is rescaled to region r's area: an image whose left half is
    style 0 and right half style 1 scores far better than the swapped assignment."""
    h, w = 32, 32
    styles = [jnp.asarray(rng.random((h, w, 3), np.float32) * s) for s in (0.3, 1.0)]
    masks = jnp.asarray(_halves(h, w))
    content = jnp.asarray(rng.random((h, w, 3), np.float32))
    targets = compute_targets(random_params, content, styles, OBJECTIVE, masks=masks)
    assert targets.style["relu1_1"].shape == (2, 64, 64)
    assert targets.masks["relu2_1"].shape == (2, h // 2, w // 2)
    right = jnp.concatenate([styles[0][:, : w // 2], styles[1][:, w // 2 :]], axis=1)
    wrong = jnp.concatenate([styles[1][:, : w // 2], styles[0][:, w // 2 :]], axis=1)
    good = loss_terms(right, random_params, targets, OBJECTIVE)["style"]
    bad = loss_terms(wrong, random_params, targets, OBJECTIVE)["style"]
    assert good * 10 < bad


def test_masks_must_match_the_styles():
    one_line_error(lambda: resolve({"style": ["a.jpg", "b.jpg"], "masks": ["m.png"]}),
                   "'masks'", "1 masks for 2 style image(s)")
    one_line_error(lambda: resolve({"masks": ["m.png", "n.png"]}), "2 masks for 1 style")
    one_line_error(lambda: resolve({"style": ["a.jpg", "b.jpg"], "masks": ["m.png", "n.png"],
                                    "style_blend_weights": [1, 2]}), "style_blend_weights")
    one_line_error(lambda: resolve({"masks": 3}), "'masks'", "expected a path or a list")
    config = resolve({"style": ["a.jpg", "b.jpg"], "masks": ["m.png", "n.png"]})
    assert config.masks == ("m.png", "n.png")
    assert config.to_dict()["masks"] == ["m.png", "n.png"]


def test_masks_are_resized_to_the_content_and_a_black_mask_refused():
    config = resolve({"size": 64, "style": ["a.jpg", "b.jpg"], "masks": ["m.png", "n.png"]})
    content = Image.new("RGB", (128, 96), (120, 80, 40))
    styles = [Image.new("RGB", (50, 50), c) for c in ((255, 0, 0), (0, 0, 255))]
    left = Image.new("L", (20, 10), 0)
    left.paste(255, (0, 0, 10, 10))
    right = Image.eval(left, lambda v: 255 - v)
    inputs = prepare_inputs(config, content, styles, masks=[left, right])
    assert inputs.masks.shape == (2, 48, 64)
    assert inputs.masks.dtype == np.float32
    np.testing.assert_allclose(inputs.masks.sum(axis=0), 1.0, atol=1e-2)
    assert inputs.masks[0, :, :20].min() > 0.99 and inputs.masks[0, :, 44:].max() < 0.01
    black = Image.new("L", (20, 10), 0)
    one_line_error(lambda: prepare_inputs(config, content, styles, masks=[left, black]),
                   "mask n.png is black everywhere")
    one_line_error(lambda: prepare_inputs(config, content, styles, masks=[left]),
                   "1 masks for 2 style image(s)")


def test_cli_collects_repeated_masks_in_order():
    from jstyle.run import load_config, parser

    args = parser().parse_args(["--style", "a.jpg", "--mask", "m.png", "--style", "b.jpg",
                                "--mask", "n.png"])
    config = load_config(args)
    assert config.style == ("a.jpg", "b.jpg")
    assert config.masks == ("m.png", "n.png")


@pytest.mark.slow
def test_two_styles_paint_their_own_halves(real_weights):
    """End to end through the API on the real network: a red and a blue style, one per half,
    the left half comes out red and the right half blue."""
    import jstyle

    h, w = 48, 64
    grain = np.random.default_rng(1).random((h, w, 1)).astype(np.float32)
    red = np.concatenate([0.5 + 0.5 * grain, 0.1 * grain, 0.1 * grain], axis=-1)
    blue = red[..., ::-1].copy()
    content = np.full((h, w, 3), 0.5, np.float32)
    out = jstyle.stylize(content, [red, blue], masks=list(_halves(h, w)), size=w,
                         iterations=40, content_weight=0.0, content_layers=["relu1_1"],
                         style_layers=["relu1_1", "relu2_1"], weights=str(real_weights.path))
    left, right = out[:, : w // 2 - 4], out[:, w // 2 + 4 :]
    assert left[..., 0].mean() > left[..., 2].mean() + 0.2
    assert right[..., 2].mean() > right[..., 0].mean() + 0.2
