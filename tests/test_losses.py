"""The paper's formulas (eqs. 1, 3-5, 7) against independent numpy code, and its analytic
derivatives (eqs. 2 and 6) against jax.grad; the later style losses (mean/std, Wasserstein,
sliced Wasserstein, histogram, MRF, REMD) against numpy and central differences."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

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


# --- The style losses after the Gram matrix: each against independent float64 numpy code,
# its gradient against central differences (float64), per-image batching, jit and vmap.
# Everything goes through the module-level jitted functions below, so each is compiled
# once per shape and dtype and shared between the tests.

H, W, N = 5, 6, 4  # the generated image's map; the style's is 7 x 7 (another count)


def _flat(F):
    """(H, W, N) -> float64 (M, N), positions row-major."""
    F = np.asarray(F, np.float64)
    return F.reshape(-1, F.shape[-1])


def _np_quantile_at(sorted_style, m):
    """The style's empirical quantile function (points at (j + 1/2) / M_s) at (k + 1/2) / m."""
    ms = len(sorted_style)
    return np.interp((np.arange(m) + 0.5) / m, (np.arange(ms) + 0.5) / ms, sorted_style)


def _np_mean_std(F, S, eps=1e-5):
    X, Y = _flat(F), _flat(S)
    total = 0.0
    for i in range(X.shape[1]):
        sx, sy = np.sqrt(np.var(X[:, i]) + eps), np.sqrt(np.var(Y[:, i]) + eps)
        total += (X[:, i].mean() - Y[:, i].mean()) ** 2 + (sx - sy) ** 2
    return total / X.shape[1]


def _np_wasserstein(F, S, sqrtm=True):
    X, Y = _flat(F), _flat(S)
    C, Cs = np.cov(X.T, bias=True), np.cov(Y.T, bias=True)
    # tr (Cs^1/2 C Cs^1/2)^1/2 = tr (C Cs)^1/2, the similar non-symmetric form; for singular
    # covariances by the eigenvalues of C Cs (real, >= 0) rather than scipy's sqrtm.
    if sqrtm:
        bures = np.trace(scipy.linalg.sqrtm(C @ Cs)).real
    else:
        bures = np.sum(np.sqrt(np.clip(np.linalg.eigvals(C @ Cs).real, 0, None)))
    w2 = np.sum((X.mean(0) - Y.mean(0)) ** 2) + np.trace(C) + np.trace(Cs) - 2 * bures
    return w2 / X.shape[1]


def _np_sliced(F, S, directions):
    X, Y = _flat(F), _flat(S)
    per_direction = [np.mean((np.sort(X @ v) - _np_quantile_at(np.sort(Y @ v), len(X))) ** 2)
                     for v in np.asarray(directions, np.float64)]
    return np.mean(per_direction)


def _np_histogram(F, sorted_style):
    X, Y = _flat(F), np.asarray(sorted_style, np.float64)
    total = 0.0
    for i in range(X.shape[1]):
        rank = np.empty(len(X), int)
        rank[np.argsort(X[:, i])] = np.arange(len(X))
        remapped = np.interp((rank + 0.5) / len(X), (np.arange(len(Y)) + 0.5) / len(Y), Y[:, i])
        total += np.sum((X[:, i] - remapped) ** 2)
    return total / X.size


def _np_patches(F, k=3):
    F = np.asarray(F, np.float64)
    h, w, _ = F.shape
    return np.array([F[i:i + k, j:j + k].ravel() for i in range(h - k + 1)
                     for j in range(w - k + 1)])


def _np_mrf(F, S):
    P, Q = _np_patches(F), _np_patches(S)
    total = 0.0
    for p in P:
        ncc = [p @ q / (np.linalg.norm(p) * np.linalg.norm(q)) for q in Q]
        total += np.sum((p - Q[int(np.argmax(ncc))]) ** 2)
    return total / len(P)


def _np_remd(X, Y, both=False):
    """X (M, N) and Y (M_s, N) responses at positions; both: the two relaxations."""
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    C = 1.0 - X @ Y.T
    relaxations = C.min(axis=1).mean(), C.min(axis=0).mean()
    return relaxations if both else max(relaxations)


def _np_moments(F, S):
    X, Y = _flat(F), _flat(S)
    return (np.mean(np.abs(X.mean(0) - Y.mean(0)))
            + np.mean(np.abs(np.cov(X.T, bias=True) - np.cov(Y.T, bias=True))))


def _sliced_fixed_key(F, target):
    return losses.sliced_wasserstein_layer_loss(F, target, jax.random.key(3))


#: name -> (target from the style's responses, layer loss (F, target)), both jitted.
CASES = {
    "mean_std": (losses.mean_std_target, losses.mean_std_layer_loss),
    "wasserstein": (losses.wasserstein_target, losses.wasserstein_layer_loss),
    "sliced_wasserstein": (losses.sliced_wasserstein_target, _sliced_fixed_key),
    "histogram": (losses.histogram_target, losses.histogram_layer_loss),
    "mrf": (losses.mrf_target, functools.partial(losses.mrf_layer_loss, chunk=5)),
    "remd": (losses.remd_target, functools.partial(losses.remd_layer_loss, chunk=4)),
    "remd_moment": (losses.remd_target, losses.remd_moment_loss),
}
JITTED = {name: (jax.jit(t), jax.jit(f)) for name, (t, f) in CASES.items()}
VALUE_AND_GRAD = {name: jax.jit(jax.value_and_grad(f)) for name, (_, f) in CASES.items()}


def _grad(name, F, target):
    return VALUE_AND_GRAD[name](F, target)[1]


_sqrtm = jax.jit(losses.psd_sqrtm)
_sliced_projected = jax.jit(losses.sliced_wasserstein_projected)
_sliced = jax.jit(losses.sliced_wasserstein_layer_loss, static_argnames="num_projections")
_histogram_target = jax.jit(losses.histogram_target, static_argnames="num_quantiles")
_remd = jax.jit(losses.remd_layer_loss, static_argnames="chunk")
_remd_target = jax.jit(losses.remd_target)


@pytest.fixture
def maps(rng):
    """A generated image's responses (5, 6, 4) and a style image's (7, 7, 4), float32."""
    F = rng.standard_normal((H, W, N)).astype(np.float32)
    S = (1.5 * rng.standard_normal((7, 7, N)) + 0.5).astype(np.float32)
    return F, S


def test_new_losses_are_public_and_cite_their_paper():
    names = [f.__name__ for pair in CASES.values() for f in pair if hasattr(f, "__name__")]
    names = [name for name in names if not name.startswith("_")]
    names += ["sliced_wasserstein_layer_loss", "sliced_wasserstein_projected", "mrf_layer_loss",
              "remd_layer_loss", "psd_sqrtm"]
    for name in names:
        assert name in losses.__all__, name
        doc = getattr(losses, name).__doc__
        assert re.search(r"(19|20)\d\d,\s+\"", doc), name  # a year and a title


def test_mean_std_is_li_2017_sec4(maps):
    F, S = maps
    target_of, loss = JITTED["mean_std"]
    np.testing.assert_allclose(loss(F, target_of(S)), _np_mean_std(F, S), rtol=1e-5)
    # A constant channel: sigma = sqrt(eps), and the gradient stays finite.
    F = F.copy()
    F[..., 2] = 0.7
    np.testing.assert_allclose(loss(F, target_of(S)), _np_mean_std(F, S), rtol=1e-5)
    assert np.isfinite(_grad("mean_std", F, target_of(S))).all()


def test_psd_sqrtm_against_scipy(rng):
    B = rng.standard_normal((6, 4))
    K = B.T @ B
    np.testing.assert_allclose(_sqrtm(K.astype(np.float32)),
                               scipy.linalg.sqrtm(K).real, rtol=1e-4, atol=1e-5)
    R = rng.standard_normal((4, 4))

    def f(K):
        return jnp.sum(R * losses.psd_sqrtm(K))

    with jax.enable_x64(True):
        # Rank 2 of 4: still the square root.
        low = B[:2].T @ B[:2]
        root = np.asarray(_sqrtm(low))
        np.testing.assert_allclose(root @ root, low, atol=1e-10)
        np.testing.assert_allclose(root, scipy.linalg.sqrtm(low).real, atol=1e-6)
        # At full rank the derivative is the Sylvester solution: central differences.
        grad, value = jax.jit(jax.grad(f)), jax.jit(jax.vmap(f))
        h, E = 1e-6, np.eye(16).reshape(16, 4, 4)
        shifted = np.asarray(value(np.concatenate([K + h * E, K - h * E])))
        np.testing.assert_allclose(grad(K), ((shifted[:16] - shifted[16:]) / (2 * h)).reshape(4, 4),
                                   rtol=1e-6, atol=1e-8)
        # Rank-deficient and zero: finite.
        assert np.isfinite(grad(low)).all()
        assert np.isfinite(grad(np.zeros((4, 4)))).all()


def test_wasserstein_is_the_gaussian_w2(maps):
    F, S = maps
    target_of, loss = JITTED["wasserstein"]
    target = target_of(S)
    np.testing.assert_allclose(target.cov_sqrt @ target.cov_sqrt, target.cov, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(loss(F, target), _np_wasserstein(F, S), rtol=1e-4, atol=1e-6)
    assert abs(float(loss(S, target))) < 1e-5  # the same Gaussian


def test_wasserstein_gradient_is_finite_when_rank_deficient(rng):
    """Fewer positions than channels (M = 3 < N = 4), a dead channel, a dead style channel,
    a constant image."""
    S = rng.standard_normal((7, 7, N)).astype(np.float32)
    S[..., 3] = 0.0
    target = JITTED["wasserstein"][0](S)
    F = rng.standard_normal((1, 3, N)).astype(np.float32)
    F[..., 1] = 0.0
    dead = (rng.standard_normal((H, W, N)) * [1, 1, 1, 0]).astype(np.float32)
    for F_ in (F, np.zeros_like(F), dead):
        assert np.isfinite(_grad("wasserstein", F_, target)).all(), F_
    np.testing.assert_allclose(JITTED["wasserstein"][1](F, target),
                               _np_wasserstein(F, S, sqrtm=False), rtol=1e-3, atol=1e-4)


def test_trace_sqrt_is_the_trace_of_the_psd_square_root(rng):
    import scipy.linalg

    X = rng.standard_normal((40, 6))
    full = X.T @ X / 40
    low = X[:3].T @ X[:3] / 3  # rank 3 of 6
    for K in (full, low, np.diag([4.0, 1.0, 1e-4, 0.0, 0.0, 0.0])):
        expected = np.trace(scipy.linalg.sqrtm(K)).real
        np.testing.assert_allclose(losses.trace_sqrt(jnp.asarray(K, jnp.float32)), expected,
                                   rtol=2e-3, atol=1e-5)
    assert float(losses.trace_sqrt(jnp.zeros((6, 6)))) == 0.0
    assert np.isfinite(jax.grad(lambda K: losses.trace_sqrt(K))(jnp.zeros((6, 6)))).all()


def test_trace_sqrt_gradient_is_half_the_inverse_root(rng):
    """The gradient read off the iteration (K^{-1/2} / 2) against central differences, and
    finite for a rank-deficient K."""
    X = rng.standard_normal((40, 6))
    K = jnp.asarray(X.T @ X / 40, jnp.float32)
    E = rng.standard_normal((6, 6))
    E = jnp.asarray((E + E.T) / 2, jnp.float32)
    grad = jax.grad(losses.trace_sqrt)(K)
    h = 1e-2
    central = (losses.trace_sqrt(K + h * E) - losses.trace_sqrt(K - h * E)) / (2 * h)
    np.testing.assert_allclose(float(jnp.sum(grad * E)), float(central), rtol=2e-3)
    np.testing.assert_allclose(grad, grad.T)
    low = jnp.asarray(X[:3].T @ X[:3] / 3, jnp.float32)
    assert np.isfinite(jax.grad(losses.trace_sqrt)(low)).all()


def test_sliced_wasserstein_is_heitz_2021_eq5_8(maps):
    F, S = maps
    target = JITTED["sliced_wasserstein"][0](S)
    V = np.random.default_rng(1).standard_normal((6, N))
    V = (V / np.linalg.norm(V, axis=1, keepdims=True)).astype(np.float32)
    # 30 against 49 positions: the style's quantiles interpolated.
    np.testing.assert_allclose(_sliced_projected(F, target, V), _np_sliced(F, S, V), rtol=1e-5)
    # Equal counts of positions: the plain sorted comparison.
    G = S[::-1] + 0.1
    np.testing.assert_allclose(_sliced_projected(G, target, V), _np_sliced(G, S, V), rtol=1e-5)
    # The keyed loss draws num_projections (default N) unit normal directions from its key
    # (CASES: key 3): the same key, the same value.
    drawn = np.array(jax.random.normal(jax.random.key(3), (N, N)))
    drawn /= np.linalg.norm(drawn, axis=1, keepdims=True)
    value = JITTED["sliced_wasserstein"][1](F, target)
    np.testing.assert_allclose(value, _np_sliced(F, S, drawn), rtol=1e-5)
    assert value == JITTED["sliced_wasserstein"][1](F, target)
    other = _sliced(F, target, jax.random.key(8), num_projections=5)
    assert other.shape == () and other != value


def test_sliced_wasserstein_with_fixed_directions_sorts_the_style_once(maps):
    F, S = maps
    V = np.asarray(losses.random_directions(jax.random.key(2), 6, N))
    np.testing.assert_allclose(np.linalg.norm(V, axis=1), 1.0, rtol=1e-6)
    target = losses.sliced_wasserstein_fixed_target(S, V)
    assert target.sorted_projections.shape == (6, 49)  # a row per direction
    np.testing.assert_allclose(losses.sliced_wasserstein_fixed_layer_loss(F, target),
                               _np_sliced(F, S, V), rtol=1e-5)
    batch = np.stack([F, F[::-1]])
    np.testing.assert_allclose(losses.sliced_wasserstein_fixed_layer_loss(batch, target),
                               [_np_sliced(F, S, V), _np_sliced(F[::-1], S, V)], rtol=1e-5)


def test_histogram_is_risser_2017_eq4(maps):
    F, S = maps
    target_of, loss = JITTED["histogram"]
    target = target_of(S)
    np.testing.assert_allclose(target, np.sort(_flat(S), axis=0).T, rtol=1e-6)  # channel rows
    np.testing.assert_allclose(loss(F, target), _np_histogram(F, np.sort(_flat(S), axis=0)),
                               rtol=1e-5)
    # Quantiles at a fixed count stand for the sorted responses.
    few = _histogram_target(S, num_quantiles=10)
    expected = np.stack([_np_quantile_at(c, 10) for c in np.sort(_flat(S), axis=0).T], axis=1)
    np.testing.assert_allclose(few, expected.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss(F, few), _np_histogram(F, expected), rtol=1e-5)
    # R(O) is a constant: the gradient is 2 (O - R(O)) / (M N).
    X = _flat(F)
    remapped = np.stack([_np_quantile_at(np.sort(_flat(S)[:, i]), len(X))[
        np.argsort(np.argsort(X[:, i]))] for i in range(N)], axis=1)
    np.testing.assert_allclose(_flat(_grad("histogram", F, target)), 2 * (X - remapped) / X.size,
                               rtol=1e-4, atol=1e-7)


def test_mrf_is_li_wand_2016_eq2_3(maps):
    F, S = maps
    target = JITTED["mrf"][0](S)
    assert target.patches.shape == (25, 9 * N) and target.norms.shape == (25,)
    np.testing.assert_allclose(target.patches, _np_patches(S), rtol=1e-6)
    expected = _np_mrf(F, S)
    assert len(_np_patches(F)) == 12
    # In blocks of 5 (CASES) of the 12 generated patches: the last one padded.
    np.testing.assert_allclose(JITTED["mrf"][1](F, target), expected, rtol=1e-5)


def test_remd_is_strotss_eq2_4(maps):
    F, S = maps
    target = JITTED["remd"][0](S)
    expected = _np_remd(_flat(F), _flat(S))
    # 30 x 49 costs in 4 x 4 blocks (CASES), the last ones padded.
    np.testing.assert_allclose(JITTED["remd"][1](F, target), expected, rtol=1e-5)
    # Sampled positions on either side, in one block (the default chunk); with 2 against 17
    # the style's side of the relaxation is the larger (both directions count).
    mine, theirs = np.array([0, 7]), np.arange(0, 49, 3)
    image_side, style_side = _np_remd(_flat(F)[mine], _flat(S)[theirs], both=True)
    assert style_side > image_side
    np.testing.assert_allclose(_remd(F, _remd_target(S, theirs), positions=mine), style_side,
                               rtol=1e-5)
    # An all-zero response vector: a finite gradient.
    F = F.copy()
    F[2, 3] = 0.0
    assert np.isfinite(_grad("remd", F, target)).all()


def test_remd_moment_is_strotss_eq5(maps):
    F, S = maps
    target_of, loss = JITTED["remd_moment"]
    np.testing.assert_allclose(loss(F, target_of(S)), _np_moments(F, S), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_new_loss_gradient_matches_central_differences_and_reduces_per_image(name, rng):
    """float64, every coordinate of a (5, 6, 4) map at once: the 2 * 120 shifted maps (and
    the map itself) go through the loss as one batch against the one style's target, one
    value per image. For the sorts and argmins (histogram, sliced, mrf, remd) the random
    point is generic: no tie moves within +-h."""
    target_of, loss = JITTED[name]
    with jax.enable_x64(True):
        F = rng.standard_normal((H, W, N))
        target = target_of(1.5 * rng.standard_normal((7, 7, N)) + 0.5)
        h, E = 1e-6, np.eye(F.size).reshape(F.size, *F.shape)
        values = loss(np.concatenate([F + h * E, F - h * E, F[None]]), target)
        assert values.shape == (2 * F.size + 1,)
        value, grad = VALUE_AND_GRAD[name](F, target)
        assert value.shape == ()
        np.testing.assert_allclose(values[-1], value, rtol=1e-12, atol=1e-15)
        values = np.asarray(values)
        fd = ((values[:F.size] - values[F.size:-1]) / (2 * h)).reshape(F.shape)
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", sorted(CASES))
def test_new_loss_vmaps_over_images_and_styles(name, maps):
    """jax.vmap over (image, style target) pairs, float32, against the jitted single ones."""
    target_of, loss = JITTED[name]
    F, S = maps
    batch, styles = np.stack([F, 0.5 * F[::-1] + 0.3]), np.stack([S, S[::-1]])
    paired = jax.vmap(loss)(batch, target_of(styles))
    assert paired.shape == (2,)
    for i in range(2):
        np.testing.assert_allclose(paired[i], loss(batch[i], target_of(styles[i])), rtol=1e-5,
                                   atol=1e-7)
