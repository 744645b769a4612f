"""Eq. 7 wired to the network: targets computed once, the terms, and the optimisers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import losses
from jstyle.layers import PAPER_STYLE_LAYERS
from jstyle.objective import compute_targets, features, loss_terms, total_objective
from jstyle.optimize import LBFGS, Adam
from jstyle.preprocessing import CAFFE, TORCHVISION, from_network, to_network
from jstyle.transfer import chunk_size, initial_image, stylize
from tests.helpers import PAPER_OBJECTIVE

OBJECTIVE = PAPER_OBJECTIVE


def _images(rng, h=32, w=48):
    return [rng.random((h, w, 3), dtype=np.float32) for _ in range(3)]


@pytest.mark.parametrize("prep", [CAFFE, TORCHVISION])
def test_preprocessing_round_trip(prep, rng):
    image = rng.random((4, 5, 3), dtype=np.float32)
    np.testing.assert_allclose(from_network(to_network(image, prep), prep), image, atol=1e-5)


def test_caffe_preprocessing_is_bgr_minus_mean():
    red = np.zeros((1, 1, 3), np.float32)
    red[..., 0] = 1.0
    np.testing.assert_allclose(to_network(red, CAFFE)[0, 0], [-103.939, -116.779, 255 - 123.68],
                               rtol=1e-5)


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


def test_initial_image(rng):
    content, style, _ = _images(rng)
    noise = initial_image("noise", content, style, seed=3)
    assert noise.shape == content.shape and 0.0 <= float(noise.min()) < float(noise.max()) <= 1.0
    np.testing.assert_array_equal(noise, initial_image("noise", content, style, seed=3))
    assert not np.array_equal(noise, initial_image("noise", content, style, seed=4))
    np.testing.assert_array_equal(initial_image("content", content, style, 0), content)
    np.testing.assert_array_equal(initial_image("style", content, style, 0), style)
    np.testing.assert_array_equal(initial_image(style, content, content, 0), style)
    with pytest.raises(ValueError):
        initial_image(style[:4], content, style, 0)


def test_noise_amplitude_is_the_spread_around_grey(rng):
    content, style, _ = _images(rng)
    full = np.asarray(initial_image("noise", content, style, 3, noise_amplitude=1.0))
    quiet = np.asarray(initial_image("noise", content, style, 3, noise_amplitude=0.1))
    assert full.min() < 0.05 and full.max() > 0.95
    np.testing.assert_allclose(quiet, 0.5 + 0.1 * (full - 0.5), atol=1e-6)
    assert quiet.min() >= 0.45 and quiet.max() <= 0.55
    default = np.asarray(initial_image("noise", content, style, 3))
    np.testing.assert_array_equal(default, quiet)  # NOISE_AMPLITUDE, as the config's default


def test_chunk_size():
    assert chunk_size(1) == 1
    assert chunk_size(100) == 2
    assert chunk_size(5000) == 20


def test_gradient_of_the_objective_is_finite(random_params, rng):
    content, style, other = _images(rng)
    targets = compute_targets(random_params, content, [style], OBJECTIVE)
    g = jax.grad(total_objective)(jnp.asarray(other), random_params, targets, OBJECTIVE)
    assert g.shape == other.shape and bool(jnp.isfinite(g).all()) and float(jnp.abs(g).max()) > 0


def test_a_non_finite_loss_stops_and_keeps_the_last_finite_image(random_params, rng):
    import dataclasses

    content, style, _ = _images(rng)
    exploding = dataclasses.replace(OBJECTIVE, style_weight=1e38)  # float32 overflows to inf
    result = stylize(random_params, content, [style], exploding, LBFGS(5), iterations=6,
                     init="content")
    assert result.stopped is not None
    assert "NaN or infinite at iteration 1" in result.stopped and "style" in result.stopped
    assert result.history == []
    np.testing.assert_array_equal(result.image, content)  # never left the last finite image


def test_interrupt_returns_the_work_done(random_params, rng):
    from jstyle.transfer import Interrupted

    content, style, _ = _images(rng)

    def stop_at_4(progress):
        if progress.iteration >= 4:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        stylize(random_params, content, [style], OBJECTIVE, Adam(0.05), iterations=10,
                save_every=2, on_progress=stop_at_4)
    result = info.value.result
    assert len(result.history) == 4
    assert result.stopped == "interrupted after iteration 4"
    assert np.isfinite(result.image).all() and not np.array_equal(result.image, content)
    assert isinstance(info.value, KeyboardInterrupt)


def test_stylize_blends_styles_with_the_given_weights(random_params, rng):
    content, s1, s2 = _images(rng)
    only_first = stylize(random_params, content, [s1, s2], OBJECTIVE, Adam(0.05), iterations=1,
                         init="content", style_blend=[1.0, 0.0])
    first = stylize(random_params, content, [s1], OBJECTIVE, Adam(0.05), iterations=1,
                    init="content")
    assert only_first.terms["style"] == pytest.approx(first.terms["style"], rel=1e-5)


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


def test_coarse_to_fine_stages(random_params, rng):
    import types

    from jstyle.config import resolve
    from jstyle.inputs import Inputs
    from jstyle.pipeline import run_transfer

    weights = types.SimpleNamespace(params=random_params, preprocessing=CAFFE)
    content = rng.random((48, 64, 3), dtype=np.float32)
    style = rng.random((48, 64, 3), dtype=np.float32)
    config = resolve({"size": 64, "coarse_sizes": [32, 48], "coarse_iterations": 2,
                      "iterations": 1, "optimizer": "adam"})
    outcome = run_transfer(weights, Inputs(content, [style], "noise", {}), config)
    image, stages = outcome.result.image, outcome.stages
    assert image.shape == content.shape and np.isfinite(image).all()
    assert [(s["width"], s["height"], s["iterations"]) for s in stages] == [(32, 24, 2),
                                                                           (48, 36, 2)]
    # alpha scaled by the ratio of pixels, so each stage strikes the full size's balance
    assert stages[0]["content_weight"] == pytest.approx(4.0)
    assert stages[1]["content_weight"] == pytest.approx((48 * 64) / (36 * 48))
