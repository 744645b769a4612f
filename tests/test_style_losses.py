"""How the style losses after the Gram matrix enter eq. 5 (jstyle.style_losses): their
targets from one or several style images, what they draw once per run, and their place
in the objective's terms."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from jstyle import losses, style_losses
from jstyle.objective import compute_targets, features, loss_terms
from jstyle.options import STYLE_LOSSES
from tests.helpers import PAPER_OBJECTIVE

KEY = jax.random.PRNGKey(0)


def _flat(F):
    return np.asarray(F, np.float64).reshape(-1, F.shape[-1])


def test_every_style_loss_but_gram_has_a_term():
    assert set(style_losses.TERMS) == set(STYLE_LOSSES) - {"gram"}


def _mixture(rng, blend):
    """Two style images' responses (30 and 20 positions), all their positions, and each
    position's weight in the blend's mixture (its image's weight over its count)."""
    A = rng.standard_normal((6, 5, 3)).astype(np.float32)
    B = (2.0 * rng.standard_normal((4, 5, 3)) + 1.0).astype(np.float32)
    X = np.concatenate([_flat(A), _flat(B)])
    w = np.concatenate([np.full(30, blend[0] / 30), np.full(20, blend[1] / 20)])
    return A, B, X, w


def test_mean_std_of_several_styles_is_their_mixtures(rng):
    A, B, X, w = _mixture(rng, [0.25, 0.75])
    got = style_losses.targets("mean_std", [A, B], [0.25, 0.75], KEY, (6, 5))
    mean = w @ X
    var = w @ (X - mean) ** 2
    np.testing.assert_allclose(got.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.std, np.sqrt(var + 1e-5), rtol=1e-4)
    one = style_losses.targets("mean_std", [A], [1.0], KEY, (6, 5))
    np.testing.assert_allclose(one.std, losses.mean_std_target(A).std, rtol=1e-6)


def test_wasserstein_of_several_styles_is_their_mixtures_gaussian(rng):
    A, B, X, w = _mixture(rng, [0.5, 0.5])
    got = style_losses.targets("wasserstein", [A, B], [0.5, 0.5], KEY, (6, 5))
    mean = w @ X
    cov = (X - mean).T @ ((X - mean) * w[:, None])
    np.testing.assert_allclose(got.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.cov, cov, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got.cov_sqrt) @ np.asarray(got.cov_sqrt), cov,
                               rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", ["sliced_wasserstein", "histogram", "mrf", "remd"])
def test_a_one_style_loss_refuses_several(name, rng):
    A = rng.standard_normal((6, 5, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="one style image"):
        style_losses.targets(name, [A, A], [0.5, 0.5], KEY, (6, 5))


def test_what_is_drawn_once_comes_from_the_key(rng, monkeypatch):
    S = rng.standard_normal((9, 8, 4)).astype(np.float32)
    a = style_losses.targets("sliced_wasserstein", [S], [1.0], KEY, (9, 8))
    b = style_losses.targets("sliced_wasserstein", [S], [1.0], KEY, (9, 8))
    c = style_losses.targets("sliced_wasserstein", [S], [1.0], jax.random.PRNGKey(1), (9, 8))
    np.testing.assert_array_equal(a.directions, b.directions)
    assert a.directions.shape == (4, 4) and not np.allclose(a.directions, c.directions)
    monkeypatch.setattr(style_losses, "SAMPLES", 10)  # 72 positions, 42 patches
    mrf = style_losses.targets("mrf", [S], [1.0], KEY, (9, 8))
    assert mrf.patches.shape == (10, 36) and mrf.norms.shape == (10,)
    remd = style_losses.targets("remd", [S], [1.0], KEY, (5, 4))  # 20 generated positions
    assert remd.style.unit.shape == (10, 4) and remd.positions.shape == (10,)
    assert len(set(np.asarray(remd.positions).tolist())) == 10
    small = style_losses.targets("remd", [S[:2, :4]], [1.0], KEY, (2, 3))
    assert small.positions is None and small.style.unit.shape == (8, 4)


def test_the_objective_adds_each_loss_times_its_weight(random_params, rng):
    content, style, image = (rng.random((32, 48, 3), dtype=np.float32) for _ in range(3))
    mixed = dataclasses.replace(PAPER_OBJECTIVE,
                                style_losses=(("gram", 1.0), ("mean_std", 3.0)))
    targets = compute_targets(random_params, content, [style], mixed)
    assert set(targets.statistics) == {"mean_std"}
    assert set(targets.style) == set(targets.statistics["mean_std"])
    terms = loss_terms(image, random_params, targets, mixed)
    F = features(random_params, image, mixed, ["relu3_1"])["relu3_1"]
    expected = (losses.style_layer_loss(F, targets.style["relu3_1"])
                + 3.0 * losses.mean_std_layer_loss(F, targets.statistics["mean_std"]["relu3_1"]))
    np.testing.assert_allclose(terms["style/relu3_1"], expected, rtol=1e-5)
    # one program for every weight of the losses
    assert mixed.program() == dataclasses.replace(mixed, style_losses=(
        ("gram", 2.0), ("mean_std", 5.0))).program()
    only = dataclasses.replace(PAPER_OBJECTIVE, style_losses=(("histogram", 1.0),))
    alone = compute_targets(random_params, content, [style], only)
    assert alone.style == {} and set(alone.statistics) == {"histogram"}
    assert np.isfinite(float(loss_terms(image, random_params, alone, only)["total"]))


def test_masks_take_the_gram_loss_only(random_params, rng):
    content, style = (rng.random((32, 48, 3), dtype=np.float32) for _ in range(2))
    only = dataclasses.replace(PAPER_OBJECTIVE, style_losses=(("mean_std", 1.0),))
    with pytest.raises(ValueError, match="masks need style_loss: gram"):
        compute_targets(random_params, content, [style], only,
                        masks=np.ones((1, 32, 48), np.float32))
