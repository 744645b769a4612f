"""The paper's formulas (eqs. 1, 3-5, 7) against independent numpy code, and its analytic
derivatives (eqs. 2 and 6) against jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import losses


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _paper_matrix(F):
    """(H, W, N) -> the paper's N x M matrix F^l."""
    h, w, n = F.shape
    return F.reshape(h * w, n).T


def test_gram_matrix_is_eq3(rng):
    F = rng.standard_normal((5, 7, 4)).astype(np.float32)
    Fl = _paper_matrix(F)
    expected = np.array([[np.sum(Fl[i] * Fl[j]) for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(losses.gram_matrix(F), expected, rtol=1e-5)


def test_gram_matrix_keeps_batch_axes(rng):
    F = rng.standard_normal((2, 3, 5, 7, 4)).astype(np.float32)
    G = losses.gram_matrix(F)
    assert G.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(G[1, 2], losses.gram_matrix(F[1, 2]), rtol=1e-5)


def test_content_loss_is_eq1(rng):
    F, P = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    expected = 0.5 * sum((F[i, j, k] - P[i, j, k]) ** 2
                         for i in range(6) for j in range(5) for k in range(3))
    np.testing.assert_allclose(losses.content_loss(F, P), expected, rtol=1e-5)


def test_style_layer_loss_is_eq4(rng):
    h, w, n = 6, 5, 3
    F = rng.standard_normal((h, w, n)).astype(np.float32)
    S = rng.standard_normal((h, w, n)).astype(np.float32)
    Fl, Sl = _paper_matrix(F).astype(np.float64), _paper_matrix(S).astype(np.float64)
    G, A = Fl @ Fl.T, Sl @ Sl.T
    m = h * w
    expected = np.sum((G - A) ** 2) / (4 * n**2 * m**2)
    A32 = losses.gram_matrix(S)
    np.testing.assert_allclose(losses.style_layer_loss(F, A32), expected, rtol=1e-5)


def test_losses_reduce_per_image(rng):
    F, P = rng.standard_normal((2, 3, 4, 4, 2)).astype(np.float32)
    assert losses.content_loss(F, P).shape == (3,)
    A = losses.gram_matrix(P)
    per_image = losses.style_layer_loss(F, A)
    assert per_image.shape == (3,)
    np.testing.assert_allclose(per_image[2], losses.style_layer_loss(F[2], A[2]), rtol=1e-6)


def test_style_loss_is_eq5_weighted_sum(rng):
    feats = {"a": rng.standard_normal((4, 4, 2)), "b": rng.standard_normal((2, 2, 3))}
    styles = {k: rng.standard_normal(v.shape) for k, v in feats.items()}
    grams = {k: losses.gram_matrix(v) for k, v in styles.items()}
    weights = {"a": 0.25, "b": 0.75}
    expected = sum(w * losses.style_layer_loss(feats[k], grams[k]) for k, w in weights.items())
    np.testing.assert_allclose(losses.style_loss(feats, grams, weights), expected, rtol=1e-6)
    # Only the layers named in the weights count.
    np.testing.assert_allclose(
        losses.style_loss(feats, grams, {"b": 1.0}), losses.style_layer_loss(feats["b"],
                                                                             grams["b"]))


def test_total_loss_is_eq7():
    assert losses.total_loss(2.0, 3.0, 1e-3, 1.0) == pytest.approx(3.002)
    assert losses.total_loss(2.0, 3.0, 1.0, 1e3, tv=5.0, tv_weight=0.1) == pytest.approx(3002.5)


def test_total_variation_against_numpy(rng):
    x = rng.standard_normal((5, 6, 3)).astype(np.float32)
    expected = np.sum(np.diff(x, axis=0) ** 2) + np.sum(np.diff(x, axis=1) ** 2)
    np.testing.assert_allclose(losses.total_variation_loss(x), expected, rtol=1e-5)
    assert float(losses.total_variation_loss(np.ones((4, 4, 3)))) == 0.0


def test_content_gradient_is_eq2(rng):
    """dL_content/dF^l = (F - P) where F^l > 0, and 0 where the unit is off (eq. 2)."""
    Z = rng.standard_normal((6, 5, 4)).astype(np.float32)  # the layer's pre-activation
    P = np.maximum(rng.standard_normal((6, 5, 4)), 0).astype(np.float32)
    grad = jax.grad(lambda z: losses.content_loss(jax.nn.relu(z), P))(Z)
    F = np.maximum(Z, 0)
    expected = np.where(F > 0, F - P, 0.0)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_style_gradient_is_eq6(rng):
    """dE_l/dF^l_ij = 1/(N^2 M^2) ((F^l)^T (G^l - A^l))_ji where F^l_ij > 0, else 0 (eq. 6)."""
    h, w, n = 6, 5, 4
    m = h * w
    Z = rng.standard_normal((h, w, n)).astype(np.float32)
    A = np.asarray(losses.gram_matrix(np.maximum(rng.standard_normal((h, w, n)), 0)))
    grad = jax.grad(lambda z: losses.style_layer_loss(jax.nn.relu(z), A))(Z)
    Fl = _paper_matrix(np.maximum(Z, 0)).astype(np.float64)  # N x M
    G = Fl @ Fl.T
    paper = (Fl.T @ (G - A)).T / (n**2 * m**2)  # N x M, element (i, j) = ((F^T (G - A))_ji
    paper = np.where(Fl > 0, paper, 0.0)
    np.testing.assert_allclose(_paper_matrix(np.asarray(grad)), paper, rtol=1e-4, atol=1e-9)


def test_losses_jit_and_agree_with_eager(rng):
    F, P = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    A = losses.gram_matrix(P)
    np.testing.assert_allclose(jax.jit(losses.style_layer_loss)(F, A),
                               losses.style_layer_loss(F, A), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(losses.content_loss)(F, P),
                               losses.content_loss(F, P), rtol=1e-6)
    assert jnp.isfinite(jax.jit(jax.grad(losses.style_layer_loss))(F, A)).all()


def test_gram_derivative_matches_autodiff_with_batch_axes(rng):
    F = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    R = rng.standard_normal((2, 3, 3)).astype(np.float32)  # not symmetric on purpose

    def ours(F):
        return jnp.sum(losses.gram_matrix(F) * R)

    def plain(F):
        return jnp.sum(jnp.einsum("...hwi,...hwj->...ij", F, F) * R)

    np.testing.assert_allclose(jax.grad(ours)(F), jax.grad(plain)(F), rtol=1e-5, atol=1e-5)
