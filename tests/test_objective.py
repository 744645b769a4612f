"""Eq. 7 wired to the network: targets computed once, the terms, and their gradient."""

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import losses
from jstyle.layers import PAPER_STYLE_LAYERS
from jstyle.objective import compute_targets, features, loss_terms, total_objective
from jstyle.optimize import Adam
from jstyle.transfer import stylize
from tests.helpers import PAPER_OBJECTIVE

OBJECTIVE = PAPER_OBJECTIVE


def _images(rng, h=32, w=48):
    return [rng.random((h, w, 3), dtype=np.float32) for _ in range(3)]


def test_targets_and_terms(random_params, rng):
    content, style, other = _images(rng)
    targets = compute_targets(random_params, content, [style], OBJECTIVE)
    assert set(targets.content) == {"relu4_2"}
    assert set(targets.style) == set(PAPER_STYLE_LAYERS)
    assert targets.style["relu3_1"].shape == (256, 256)

    at_content = loss_terms(content, random_params, targets, OBJECTIVE)
    assert float(at_content["content"]) == 0.0
    at_style = loss_terms(style, random_params, targets, OBJECTIVE)
    assert float(at_style["style"]) < 1e-6 * float(loss_terms(other, random_params, targets,
                                                              OBJECTIVE)["style"])
    terms = loss_terms(other, random_params, targets, OBJECTIVE)
    F = features(random_params, other, OBJECTIVE, ["relu2_1"])["relu2_1"]
    np.testing.assert_allclose(terms["style/relu2_1"],
                               losses.style_layer_loss(F, targets.style["relu2_1"]), rtol=1e-5)
    expected = terms["content"] + 1e3 * sum(0.2 * terms[f"style/{n}"] for n in PAPER_STYLE_LAYERS)
    np.testing.assert_allclose(terms["total"], expected, rtol=1e-5)
    np.testing.assert_allclose(total_objective(other, random_params, targets, OBJECTIVE),
                               terms["total"], rtol=1e-6)


def test_several_styles_blend_their_grams(random_params, rng):
    content, s1, s2 = _images(rng)
    one = compute_targets(random_params, content, [s1], OBJECTIVE)
    two = compute_targets(random_params, content, [s2], OBJECTIVE)
    both = compute_targets(random_params, content, [s1, s2], OBJECTIVE)
    np.testing.assert_allclose(both.style["relu1_1"],
                               (one.style["relu1_1"] + two.style["relu1_1"]) / 2, rtol=1e-5)


def test_tv_term_only_when_weighted(random_params, rng):
    content, style, other = _images(rng)
    targets = compute_targets(random_params, content, [style], OBJECTIVE)
    import dataclasses

    with_tv = dataclasses.replace(OBJECTIVE, tv_weight=2.0)
    plain = loss_terms(other, random_params, targets, OBJECTIVE)
    smooth = loss_terms(other, random_params, targets, with_tv)
    assert float(plain["tv"]) == 0.0
    np.testing.assert_allclose(smooth["tv"], losses.total_variation_loss(other), rtol=1e-5)
    np.testing.assert_allclose(smooth["total"], plain["total"] + 2.0 * smooth["tv"], rtol=1e-5)


def test_gradient_of_the_objective_is_finite(random_params, rng):
    content, style, other = _images(rng)
    targets = compute_targets(random_params, content, [style], OBJECTIVE)
    g = jax.grad(total_objective)(jnp.asarray(other), random_params, targets, OBJECTIVE)
    assert g.shape == other.shape and bool(jnp.isfinite(g).all()) and float(jnp.abs(g).max()) > 0


def test_a_style_image_of_another_size_is_compared_per_position(random_params, rng):
    """style_scale: a style image twice the size gives (nearly) the same per-position Gram
    targets as the same texture at the content's size, thanks to the M ratio."""
    content = rng.random((32, 48, 3), dtype=np.float32)
    tile = rng.random((32, 48, 3), dtype=np.float32)
    big = np.tile(tile, (2, 2, 1))  # the same statistics, four times the positions
    same = compute_targets(random_params, content, [tile], OBJECTIVE)
    scaled = compute_targets(random_params, content, [big], OBJECTIVE)
    for name in ("relu1_1", "relu2_1"):
        a, b = np.asarray(same.style[name]), np.asarray(scaled.style[name])
        assert np.abs(a - b).max() / np.abs(a).max() < 0.1, name
    result = stylize(random_params, content, [big], OBJECTIVE, Adam(0.05), iterations=2,
                     init="style")
    assert result.image.shape == content.shape




def test_balanced_content_weight_sets_the_gradients_ratio(random_params, rng):
    from jstyle.objective import balanced_content_weight, gradient_norms

    content, style, image = _images(rng)
    targets = compute_targets(random_params, content, [style], OBJECTIVE)
    gc, gs = gradient_norms(image, random_params, targets, OBJECTIVE)

    def term(name):
        return jax.grad(lambda x: loss_terms(x, random_params, targets, OBJECTIVE)[name])(image)

    np.testing.assert_allclose(gc, np.linalg.norm(term("content")), rtol=1e-4)
    np.testing.assert_allclose(gs, np.linalg.norm(term("style")), rtol=1e-4)
    alpha = balanced_content_weight(image, random_params, targets, OBJECTIVE, 0.5)
    np.testing.assert_allclose(alpha * gc, 0.5 * OBJECTIVE.style_weight * gs, rtol=1e-5)


def test_draw_zero_is_the_seed_and_later_draws_are_new(random_params, rng):
    import dataclasses

    content = rng.random((32, 32, 3), dtype=np.float32)
    style = rng.random((32, 32, 3), dtype=np.float32)
    sliced = dataclasses.replace(OBJECTIVE, style_losses=(("sliced_wasserstein", 1.0),))
    plain = compute_targets(random_params, content, [style], sliced)
    first = jax.jit(compute_targets, static_argnums=3)(random_params, content, [style], sliced,
                                                        None, None, jnp.int32(0))
    later = compute_targets(random_params, content, [style], sliced, draw=1)
    for layer, target in plain.statistics["sliced_wasserstein"].items():
        np.testing.assert_allclose(first.statistics["sliced_wasserstein"][layer].directions,
                                   target.directions, rtol=1e-6)  # jit's rounding aside
        assert not np.allclose(later.statistics["sliced_wasserstein"][layer].directions,
                               target.directions)
