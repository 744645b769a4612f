"""jstyle.tiling: the tiles cover the image once, and tiled evaluation is exact."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import PAPER_OBJECTIVE
from hypothesis import given, settings
from hypothesis import strategies as st

from jstyle import tiling
from jstyle.layers import PAPER_STYLE_LAYERS
from jstyle.objective import compute_targets, objective_and_terms, whole_features

PAPER_LAYERS = ("relu4_2", *PAPER_STYLE_LAYERS)

#: A shallow objective (deepest layer relu3_1: grid 4, halo 12), so that random networks
#: at tens of pixels are split into many tiles.
SHALLOW = dataclasses.replace(
    PAPER_OBJECTIVE, content_layers=(("relu2_2", 1.0),),
    style_layers=(("relu1_1", 0.5), ("relu2_1", 0.3), ("relu3_1", 0.2)), tv_weight=1.0)


def test_receptive_field_of_the_papers_layers():
    # conv1: 2 x 1, conv2: 2 x 2, conv3: 4 x 4, conv4: 4 x 8, conv5_1: 16 pixels.
    assert tiling.radius(PAPER_LAYERS) == 70
    assert tiling.grid(PAPER_LAYERS) == 16
    assert tiling.halo(PAPER_LAYERS) == 80
    assert tiling.radius(("relu3_1",)) == 10 and tiling.halo(("relu3_1",)) == 12


@settings(max_examples=200, deadline=None)
@given(st.integers(16, 3000), st.integers(16, 3000), st.integers(1, 1500))
def test_the_cores_partition_the_image_and_the_crops_hold_them(height, width, tile):
    g, h = tiling.grid(PAPER_LAYERS), tiling.halo(PAPER_LAYERS)
    plan = tiling.plan(height, width, tile, PAPER_LAYERS)
    # the memory estimate's shortcut names the same crops without listing the tiles
    assert tiling.crop_shape(height, width, tile, PAPER_LAYERS) == (plan and plan.crop)
    if plan is None:
        return
    ch, cw = plan.crop
    assert ch <= height and cw <= width
    assert (ch == height or ch % g == height % g) and (cw == width or cw % g == width % g)
    covered = np.zeros((height, width), np.int32)
    for y, x, r0, r1, c0, c1 in plan.tiles:
        assert y % g == 0 and x % g == 0 and y + ch <= height and x + cw <= width
        # the receptive field of every core position lies in the crop or past a border
        assert y == 0 or y <= r0 - h
        assert y + ch == height or y + ch >= r1 + h
        assert x == 0 or x <= c0 - h
        assert x + cw == width or x + cw >= c1 + h
        assert r0 % g == 0 and c0 % g == 0
        covered[r0:r1, c0:c1] += 1
    assert (covered == 1).all()


def test_no_plan_when_one_crop_is_the_image():
    assert tiling.plan(384, 512, 0, PAPER_LAYERS) is None
    assert tiling.plan(384, 512, 512, PAPER_LAYERS) is None
    assert tiling.plan(200, 200, 64, PAPER_LAYERS) is None  # 64 + 2 x 80 > 200


#: Compiled once per objective and shapes, so that cases differing only in values share one.
_targets = jax.jit(compute_targets, static_argnums=3, static_argnames="style_blend")
_value_and_grad = jax.jit(jax.value_and_grad(objective_and_terms, has_aux=True),
                          static_argnums=3)


def _compare(params, objective, content, styles, image, masks=None, blend=None):
    def evaluate(obj):
        targets = _targets(params, content, styles, obj, style_blend=blend, masks=masks)
        (value, terms), grad = _value_and_grad(image, params, targets, obj)
        return targets, value, grad, terms

    return evaluate(dataclasses.replace(objective, tile=0)), evaluate(objective)


def _relative(a, b) -> float:
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(a)))


def _assert_exact(whole, tiled, tol):
    (t0, v0, g0, terms0), (t1, v1, g1, terms1) = whole, tiled
    for name in t0.content:
        assert _relative(t0.content[name], t1.content[name]) < tol, name
    for name in t0.style:
        assert _relative(t0.style[name], t1.style[name]) < tol, name
    assert abs(float(v1 - v0)) <= tol * abs(float(v0))
    for key, value in terms0.items():
        assert abs(float(terms1[key] - value)) <= tol * abs(float(value)) + 1e-30, key
    assert _relative(g0, g1) < tol


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_tiled_equals_whole_on_a_random_network(random_params, rng, pooling):
    objective = dataclasses.replace(SHALLOW, pooling=pooling, tile=16)
    content, image = (jnp.asarray(rng.uniform(size=(61, 83, 3)), jnp.float32)
                      for _ in range(2))
    style = jnp.asarray(rng.uniform(size=(70, 50, 3)), jnp.float32)
    assert tiling.plan(61, 83, 16, objective.layers).count == 4 * 6
    _assert_exact(*_compare(random_params, objective, content, [style], image), 1e-5)


def test_tiled_equals_whole_with_masks_and_with_two_styles(random_params, rng):
    objective = dataclasses.replace(SHALLOW, tile=24)
    content, image = (jnp.asarray(rng.uniform(size=(64, 96, 3)), jnp.float32)
                      for _ in range(2))
    styles = [jnp.asarray(rng.uniform(size=(64, 96, 3)), jnp.float32) for _ in range(2)]
    left = np.zeros((64, 96), np.float32)
    left[:, :40] = 1.0
    masks = jnp.asarray(np.stack([left, 1.0 - left]))
    _assert_exact(*_compare(random_params, objective, content, styles, image, masks), 1e-5)
    _assert_exact(*_compare(random_params, objective, content, styles, image,
                            blend=(0.7, 0.3)), 1e-5)


def test_a_halo_short_of_the_receptive_field_is_not_exact(random_params, rng, monkeypatch):
    # The checks above can fail: without halos, the crops' borders leak in.
    objective = dataclasses.replace(SHALLOW, tile=16)
    content, image = (jnp.asarray(rng.uniform(size=(61, 83, 3)), jnp.float32)
                      for _ in range(2))
    monkeypatch.setattr(tiling, "halo", lambda layers: 0)
    whole, tiled = _compare(random_params, objective, content, [content], image)
    assert _relative(whole[2], tiled[2]) > 1e-3


def test_whole_features_puts_the_tiles_together(random_params, rng):
    objective = dataclasses.replace(SHALLOW, tile=16)
    image = jnp.asarray(rng.uniform(size=(53, 77, 3)), jnp.float32)
    layers = ("relu1_2", "pool2", "relu3_1")
    whole = whole_features(random_params, image, dataclasses.replace(objective, tile=0), layers)
    tiled = whole_features(random_params, image, objective, layers)
    for name in layers:
        assert tiled[name].shape == whole[name].shape
        assert _relative(whole[name], tiled[name]) < 1e-6, name


def test_other_style_losses_take_no_tiles():
    objective = dataclasses.replace(PAPER_OBJECTIVE, tile=128,
                                    style_losses=(("mean_std", 1.0),))
    with pytest.raises(ValueError, match="sums over positions"):
        objective.plan(512, 512)


@pytest.mark.slow
@pytest.mark.parametrize(("pooling", "styles"), [("avg", "blended"), ("max", "masked")])
def test_tiled_equals_whole_at_512_px_on_the_real_weights(real_weights, rng, pooling, styles):
    """Issue 15's criterion: 1e-4 relative at 512 px with 128 px tiles, for average and max
    pooling, with two style images blended and with masks (one style image per region)."""
    objective = dataclasses.replace(PAPER_OBJECTIVE, tile=128, pooling=pooling,
                                    preprocessing=real_weights.preprocessing)
    content, image = (jnp.asarray(rng.uniform(size=(384, 512, 3)), jnp.float32)
                      for _ in range(2))
    paintings = [jnp.asarray(rng.uniform(size=(384, 512, 3)), jnp.float32) for _ in range(2)]
    masks, blend = None, (0.7, 0.3)
    if styles == "masked":
        top = np.zeros((384, 512), np.float32)
        top[:150] = 1.0
        masks, blend = jnp.asarray(np.stack([top, 1.0 - top])), None
    assert tiling.plan(384, 512, 128, objective.layers).count == 12
    _assert_exact(*_compare(real_weights.params, objective, content, paintings, image, masks,
                            blend=blend), 1e-4)
