"""The losses of Gatys, Ecker & Bethge (CVPR 2016) as pure, jit-compatible functions.

Feature maps are channels-last, ``F`` of shape ``(..., H, W, N)``: N_l = N filters,
M_l = H * W positions. Any leading axes are batch axes: every loss reduces over
the per-image axes only and returns one value per image (a scalar for one image).

The paper writes F^l as an N_l x M_l matrix; here the same numbers are laid out
``(H, W, N)``, which is how the network produces them.

Example::

    import jax
    from jstyle.losses import gram_matrix, style_layer_loss

    A = gram_matrix(style_features)                   # eq. 3, once
    grad = jax.jit(jax.grad(style_layer_loss))(F, A)  # eq. 6

After the Gram matrix, the style losses the field found later come in the same two
parts: ``<name>_target(F_style)`` computes once what the loss compares with (an array or
a NamedTuple of arrays, a pytree that jits), and ``<name>_layer_loss(F, target)`` returns
one value per image. Each docstring names its normalisation. A target made from one
style image (no batch axes) broadcasts against a batch of generated images.

References:
  Gatys, Ecker & Bethge 2016, "Image Style Transfer Using Convolutional Neural
  Networks" (CVPR): eqs. 1-7, the Gram matrix.
  Li & Wand 2016, "Combining Markov Random Fields and Convolutional Neural Networks for
  Image Synthesis" (CVPR): :func:`mrf_layer_loss`.
  Li, Wang, Liu & Hou 2017, "Demystifying Neural Style Transfer" (IJCAI):
  :func:`mean_std_layer_loss`.
  Risser, Wilmot & Barnes 2017, "Stable and Controllable Neural Texture Synthesis and
  Style Transfer Using Histogram Losses" (arXiv): :func:`histogram_layer_loss`.
  Kolkin, Salavon & Shakhnarovich 2019, "Style Transfer by Relaxed Optimal Transport and
  Self-Similarity" (STROTSS, CVPR): :func:`remd_layer_loss`, :func:`remd_moment_loss`.
  Mroueh 2019, "Wasserstein Style Transfer" (arXiv:1905.12828, AISTATS 2020); Dowson &
  Landau 1982, "The Frechet distance between multivariate normal distributions"
  (J. Multivariate Anal.): :func:`wasserstein_layer_loss`, :func:`psd_sqrtm`.
  Heitz, Vanhoey, Chambon & Belcour 2021, "A Sliced Wasserstein Loss for Neural Texture
  Synthesis" (CVPR): :func:`sliced_wasserstein_layer_loss`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle.onednn import match_rows, sort_columns

__all__ = ["gram_matrix", "content_loss", "style_layer_loss", "gram_layer_loss", "style_loss",
    "guided_gram_matrix", "guided_style_layer_loss", "guided_gram_layer_loss",
    "total_variation_loss", "total_loss",
    "MeanStd", "mean_std_target", "mean_std_layer_loss",
    "psd_sqrtm", "trace_sqrt", "Gaussian", "wasserstein_target", "wasserstein_layer_loss",
    "sliced_wasserstein_target", "sliced_wasserstein_projected", "sliced_wasserstein_layer_loss",
    "SlicedTarget", "sliced_wasserstein_fixed_target", "sliced_wasserstein_fixed_layer_loss",
    "random_directions",
    "histogram_target", "histogram_layer_loss",
    "MRFTarget", "mrf_target", "mrf_layer_loss",
    "REMDTarget", "remd_target", "remd_layer_loss", "remd_moment_loss"]

Array = jax.Array


@jax.custom_vjp
def _gram(X: Array) -> Array:
    """X^T X of ``(..., M, N)`` positions-by-filters matrices."""
    return jnp.matmul(jnp.swapaxes(X, -1, -2), X)


def _gram_fwd(X: Array) -> tuple[Array, Array]:
    return _gram(X), X


def _gram_bwd(X: Array, dG: Array) -> tuple[Array]:
    # d(X^T X) = X (dG + dG^T): one matrix product where autodiff would make two.
    return (jnp.matmul(X, dG + jnp.swapaxes(dG, -1, -2)),)


_gram.defvjp(_gram_fwd, _gram_bwd)


def gram_matrix(F: Array) -> Array:
    """Eq. 3: G^l_ij = sum_k F^l_ik F^l_jk, the inner products of the N filter responses.

    Its derivative (the heart of eq. 6) is written by hand as a single matrix
    product, F (dG + dG^T), which halves the work of autodiff's two.

    Args:
      F: feature maps ``(..., H, W, N)``.

    Returns:
      ``(..., N, N)`` Gram matrices (not normalised; eq. 4 carries the 1/(4 N^2 M^2)).
    """
    *batch, h, w, n = F.shape
    return _gram(F.reshape(*batch, h * w, n))


def content_loss(F: Array, P: Array) -> Array:
    """Eq. 1: L_content = 1/2 sum_ij (F^l_ij - P^l_ij)^2.

    Args:
      F: responses of the generated image, ``(..., H, W, N)``.
      P: responses of the content photo, same shape (or broadcastable).
    """
    return 0.5 * jnp.sum(jnp.square(F - P), axis=(-3, -2, -1))


def style_layer_loss(F: Array, A: Array) -> Array:
    """Eq. 4: E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G^l_ij - A^l_ij)^2.

    Args:
      F: responses of the generated image at layer l, ``(..., H, W, N)``.
      A: Gram matrix of the style image at layer l, ``(..., N, N)`` (see :func:`gram_matrix`).
    """
    h, w, _ = F.shape[-3:]
    return gram_layer_loss(gram_matrix(F), A, h * w)


def gram_layer_loss(G: Array, A: Array, positions: int) -> Array:
    """Eq. 4 from the Gram matrix itself: E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G_ij - A_ij)^2,
    with M_l = ``positions``. What :func:`style_layer_loss` computes, for a G summed
    elsewhere (tile by tile: :mod:`jstyle.tiling`).

    Args:
      G: Gram matrix of the generated image at layer l, ``(..., N, N)``.
      A: the style image's, same shape.
      positions: M_l, the positions of layer l's response to the whole image.
    """
    n = G.shape[-1]
    return jnp.sum(jnp.square(G - A), axis=(-2, -1)) / (4.0 * n**2 * positions**2)


def style_loss(
    features: Mapping[str, Array], grams: Mapping[str, Array], weights: Mapping[str, float]
) -> Array:
    """Eq. 5: L_style = sum_l w_l E_l, over the layers named in ``weights``.

    Args:
      features: the generated image's responses, by layer name.
      grams: the style image's Gram matrices A^l, by layer name.
      weights: w_l, by layer name (the paper: 1/5 on each of relu1_1 ... relu5_1).
    """
    return sum(w * style_layer_loss(features[name], grams[name]) for name, w in weights.items())


def guided_gram_matrix(F: Array, T: Array) -> Array:
    """Spatially guided Gram matrices (Gatys et al. 2017, "Controlling Perceptual Factors in
    Neural Style Transfer", sec. 4.1): eq. 3 of the responses weighted by each region's
    guidance channel, G^l_r = (F^l o T^l_r)^T (F^l o T^l_r).

    Args:
      F: feature maps ``(..., H, W, N)``.
      T: guidance channels (masks) at the same resolution, ``(R, H, W)``, values in [0, 1].

    Returns:
      ``(..., R, N, N)``: one Gram matrix per region.
    """
    return gram_matrix(F[..., None, :, :, :] * T[..., None])


def guided_style_layer_loss(F: Array, A: Array, T: Array) -> Array:
    """Eq. 4 per region, weighted by the region's share of the image (Gatys et al. 2017,
    sec. 4.1).

    E_l = sum_r (M_r / M_l) 1 / (4 N_l^2 M_r^2) sum_ij (G^l_r,ij - A^l_r,ij)^2, where
    G^l_r is the :func:`guided_gram_matrix` and M_r = sum(T^l_r) the region's area at
    layer l, which takes the place of M_l. The weights M_r / M_l keep the style term on
    eq. 4's scale however the image is divided, so alpha/beta means what it means without
    masks; with a single all-ones mask this is eq. 4 exactly. A region with no area at
    this layer contributes nothing.

    Args:
      F: responses of the generated image at layer l, ``(..., H, W, N)``.
      A: each region's target Gram matrix, ``(..., R, N, N)``, computed for the region's
        area (a style image's Gram matrix times M_r / M_style).
      T: the regions' masks at layer l, ``(R, H, W)``.
    """
    h, w, _ = F.shape[-3:]
    return guided_gram_layer_loss(guided_gram_matrix(F, T), A, jnp.sum(T, axis=(-2, -1)),
                                  h * w)


def guided_gram_layer_loss(G: Array, A: Array, area: Array, positions: int) -> Array:
    """:func:`guided_style_layer_loss` from the guided Gram matrices themselves, for G
    summed elsewhere (tile by tile: :mod:`jstyle.tiling`).

    Args:
      G: each region's guided Gram matrix at layer l, ``(..., R, N, N)``.
      A: each region's target, same shape.
      area: M_r, each region's area at layer l ``(R,)`` (the sum of its mask).
      positions: M_l, the positions of layer l's response to the whole image.
    """
    n = G.shape[-1]
    scale = jnp.where(area > 0, 1.0 / (4.0 * n**2 * positions * jnp.maximum(area, 1e-12)),
                      0.0)
    return jnp.sum(jnp.sum(jnp.square(G - A), axis=(-2, -1)) * scale, axis=-1)


def total_variation_loss(image: Array) -> Array:
    """Squared total variation, sum of squared differences of neighbouring pixels.

    Not in the paper: an optional smoothness prior (Mahendran & Vedaldi 2015)
    on an image ``(..., H, W, C)``.
    """
    dy = image[..., 1:, :, :] - image[..., :-1, :, :]
    dx = image[..., :, 1:, :] - image[..., :, :-1, :]
    return jnp.sum(jnp.square(dy), axis=(-3, -2, -1)) + jnp.sum(jnp.square(dx), axis=(-3, -2, -1))


def total_loss(
    content: Array,
    style: Array,
    content_weight: float,
    style_weight: float,
    tv: Array | float = 0.0,
    tv_weight: float = 0.0,
) -> Array:
    """Eq. 7: L_total = alpha L_content + beta L_style (+ tv_weight * TV, off by default).

    The paper's alpha / beta ratio is 1e-3 (fig. 3) to 1e-4.
    """
    return content_weight * content + style_weight * style + tv_weight * tv


# --- The style losses after the Gram matrix ------------------------------------------------


def _positions(F: Array) -> Array:
    """``(..., H, W, N)`` -> ``(..., M, N)``, M = H * W positions (row-major)."""
    F = jnp.asarray(F)
    *batch, h, w, n = F.shape
    return F.reshape(*batch, h * w, n)


def _mean_cov(X: Array) -> tuple[Array, Array]:
    """The mean ``(..., N)`` and covariance ``(..., N, N)`` over the M positions of
    ``(..., M, N)``, normalised by M (the population covariance). Two passes (centre, then
    multiply), so float32 does not cancel E[x x^T] against mu mu^T."""
    mu = jnp.mean(X, axis=-2)
    Xc = X - mu[..., None, :]
    return mu, _gram(Xc) / X.shape[-2]


def _quantiles(sorted_values: Array, m: int, axis: int = -2) -> Array:
    """The empirical quantile function of samples sorted along ``axis`` (-2: ``(..., M_s,
    K)``, one column per channel or projection; -1: ``(..., K, M_s)``, one row each) at the
    m quantiles (k + 1/2) / m, k = 0 .. m-1: M_s replaced by m.

    The j-th of the M_s sorted values stands at quantile (j + 1/2) / M_s; in between it is
    linear, beyond the ends constant (``jnp.interp``). With m == M_s the values come back
    as they are. The indices and weights depend on the sizes only, so they are constants.
    """
    ms = sorted_values.shape[axis]
    if m == ms:
        return sorted_values
    position = (np.arange(m) + 0.5) * (ms / m) - 0.5
    lo = np.clip(np.floor(position), 0, ms - 1).astype(np.int32)
    hi = np.minimum(lo + 1, ms - 1)
    t = np.clip(position - lo, 0.0, 1.0)
    if axis == -2:
        t = t[:, None]
    elif axis != -1:
        raise ValueError(f"axis must be -2 or -1, not {axis}")
    below = jnp.take(sorted_values, lo, axis=axis)
    above = jnp.take(sorted_values, hi, axis=axis)
    return below + jnp.asarray(t, sorted_values.dtype) * (above - below)


def _transport_cost(P: Array, sorted_rows: Array) -> Array:
    """The mean squared distance of each row of ``P`` ``(..., K, M)`` to the sorted values
    of the same row of ``sorted_rows`` ``(..., K, M_s)`` (their quantiles at M points when
    M_s differs): 1-D optimal transport, which pairs the values by rank. Its value is the
    mean of (sort(P) - sorted)^2; computed as mean((P - R)^2), R the target value at each
    value's rank (:func:`jstyle.onednn.match_rows`, a constant), so that the gradient,
    2 (P - R) / size, needs no sort of its own. ``(...)``: one value per image."""
    target = _quantiles(jnp.asarray(sorted_rows), P.shape[-1], axis=-1)
    target = jnp.broadcast_to(target, jnp.broadcast_shapes(P.shape, target.shape))
    P = jnp.broadcast_to(P, target.shape)
    return jnp.mean(jnp.square(P - match_rows(P, target)), axis=(-2, -1))


def _sorted_rows(X: Array) -> Array:
    """``(..., M, K)`` -> ``(..., K, M)``, each column of X sorted, as a row."""
    return jnp.swapaxes(sort_columns(X), -1, -2)


def _projections(X: Array, directions: Array) -> Array:
    """Positions ``(..., M, N)`` projected on unit directions ``(P, N)``: ``(..., P, M)``,
    one row per direction (the layout :func:`_transport_cost` sorts without a transpose)."""
    return jnp.einsum("pn,...mn->...pm", jnp.asarray(directions, X.dtype), X)


def _chunks(X: Array, chunk: int) -> tuple[Array, int]:
    """``(..., M, D)`` -> ``(B, ..., chunk, D)`` blocks of rows (zero-padded), and B."""
    m = X.shape[-2]
    blocks = -(-m // chunk)
    pad = [(0, 0)] * (X.ndim - 2) + [(0, blocks * chunk - m), (0, 0)]
    X = jnp.pad(X, pad).reshape(*X.shape[:-2], blocks, chunk, X.shape[-1])
    return jnp.moveaxis(X, -3, 0), blocks


def _unchunk(Y: Array, m: int) -> Array:
    """``(B, ..., chunk)`` per-row results of :func:`_chunks` -> ``(..., M)``."""
    Y = jnp.moveaxis(Y, 0, -2)
    return Y.reshape(*Y.shape[:-2], -1)[..., :m]


def _take_rows(X: Array, index: Array, batch: tuple[int, ...]) -> Array:
    """Rows ``index`` ``(*batch, K)`` of ``X`` ``(..., M, D)`` broadcast to ``batch``."""
    X = jnp.broadcast_to(X, (*batch, *X.shape[-2:]))
    return jnp.take_along_axis(X, index[..., None], axis=-2)


class MeanStd(NamedTuple):
    """Per-channel statistics over positions: ``mean`` and ``std``, each ``(..., N)``."""

    mean: Array
    std: Array


def mean_std_target(F_style: Array, eps: float = 1e-5) -> MeanStd:
    """The batch-normalisation statistics of Li, Wang, Liu & Hou 2017, "Demystifying
    Neural Style Transfer" (IJCAI), sec. 4: each channel's mean mu_i and standard
    deviation sigma_i over the M positions (what AdaIN transfers).

    sigma_i = sqrt(var_i + eps), var_i normalised by M (the population variance), the
    same form as :func:`mean_std_layer_loss` uses.

    Args:
      F_style: the style image's responses, ``(..., H, W, N)``.
      eps: added to the variance under the square root.

    Returns:
      :class:`MeanStd`, each field ``(..., N)``.
    """
    X = _positions(F_style)
    mu = jnp.mean(X, axis=-2)
    var = jnp.mean(jnp.square(X - mu[..., None, :]), axis=-2)
    return MeanStd(mu, jnp.sqrt(var + eps))


def mean_std_layer_loss(F: Array, target: MeanStd, eps: float = 1e-5) -> Array:
    """Li, Wang, Liu & Hou 2017, "Demystifying Neural Style Transfer" (IJCAI), sec. 4:
    L_l = 1/N_l sum_i ((mu_i - mu_s,i)^2 + (sigma_i - sigma_s,i)^2), matching the
    per-channel mean and standard deviation over positions (BN statistics).

    Normalised by N_l as in the paper; sigma_i = sqrt(var_i + eps) with the population
    variance (over M), so the gradient stays finite for a constant channel.

    Args:
      F: the generated image's responses, ``(..., H, W, N)``.
      target: :func:`mean_std_target` of the style image (``(..., N)`` fields).
      eps: as in :func:`mean_std_target` (use the same value).

    Returns:
      ``(...)``: one value per image.
    """
    mu, sigma = mean_std_target(F, eps)
    return jnp.mean(jnp.square(mu - target.mean) + jnp.square(sigma - target.std), axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def psd_sqrtm(K: Array, eps: float = 1e-6) -> Array:
    """The symmetric square root K^{1/2} of symmetric PSD matrices ``(..., N, N)``.

    By ``jnp.linalg.eigh`` of (K + K^T) / 2, eigenvalues clamped at 0 (float error makes
    the zero ones of a rank-deficient K slightly negative). The derivative is written by
    hand: dY solves the Sylvester equation Y dY + dY Y = dK, which in the eigenbasis U is
    (U^T dK U)_ij / (sqrt(l_i) + sqrt(l_j)); the denominators are floored at
    sqrt(eps * l_max) + eps, so the gradient stays finite for rank-deficient K (where
    the exact one is infinite) and ignores eigenvalues below float32's eigh noise.
    Autodiff of eigh would divide by l_i - l_j instead, and a repeated zero eigenvalue
    (any rank-deficient covariance) makes that NaN.

    Used by :func:`wasserstein_layer_loss` for the Bures term of Dowson & Landau 1982,
    "The Frechet distance between multivariate normal distributions".

    Args:
      K: symmetric positive semi-definite matrices, ``(..., N, N)``.
      eps: relative (and absolute) floor of the derivative's denominators; static.

    Returns:
      ``(..., N, N)`` symmetric square roots.
    """
    return _psd_sqrtm_fwd(K, eps)[0]


def _psd_sqrtm_fwd(K: Array, eps: float) -> tuple[Array, tuple[Array, Array, Array]]:
    K = jnp.asarray(K)
    K = 0.5 * (K + jnp.swapaxes(K, -1, -2))
    lam, U = jnp.linalg.eigh(K)
    lam = jnp.maximum(lam, 0.0)
    s = jnp.sqrt(lam)
    Y = jnp.matmul(U * s[..., None, :], jnp.swapaxes(U, -1, -2))
    floor = jnp.sqrt(eps * jnp.max(lam, axis=-1)) + eps
    return Y, (U, s, floor)


def _psd_sqrtm_bwd(eps: float, residuals: tuple[Array, Array, Array], dY: Array) -> tuple[Array]:
    U, s, floor = residuals
    Ut = jnp.swapaxes(U, -1, -2)
    dY = 0.5 * (dY + jnp.swapaxes(dY, -1, -2))
    denominator = jnp.maximum(s[..., :, None] + s[..., None, :], floor[..., None, None])
    return (jnp.matmul(jnp.matmul(U, jnp.matmul(Ut, jnp.matmul(dY, U)) / denominator), Ut),)


psd_sqrtm.defvjp(_psd_sqrtm_fwd, _psd_sqrtm_bwd)


class Gaussian(NamedTuple):
    """A Gaussian fitted to responses: ``mean`` ``(..., N)``, ``cov`` ``(..., N, N)``
    (normalised by M) and its symmetric square root ``cov_sqrt`` ``(..., N, N)``."""

    mean: Array
    cov: Array
    cov_sqrt: Array


def wasserstein_target(F_style: Array) -> Gaussian:
    """The Gaussian of the style image's responses for :func:`wasserstein_layer_loss`
    (Mroueh 2019, "Wasserstein Style Transfer", the style as a Gaussian of its features):
    the mean mu_s and covariance Sigma_s over the M positions (normalised by M), and
    Sigma_s^{1/2}, computed once.

    Args:
      F_style: the style image's responses, ``(..., H, W, N)``.

    Returns:
      :class:`Gaussian`.
    """
    mu, cov = _mean_cov(_positions(F_style))
    return Gaussian(mu, cov, psd_sqrtm(cov))


def wasserstein_layer_loss(F: Array, target: Gaussian, iterations: int = 20) -> Array:
    """The squared 2-Wasserstein distance between Gaussians fitted to the responses
    (Mroueh 2019, "Wasserstein Style Transfer", arXiv:1905.12828; the closed form of
    Dowson & Landau 1982, "The Frechet distance between multivariate normal
    distributions"; crowsonkb/style-transfer-pytorch's loss), divided by N_l:

        W_2^2 = ||mu - mu_s||^2 + tr(Sigma) + tr(Sigma_s)
                - 2 tr((Sigma_s^{1/2} Sigma Sigma_s^{1/2})^{1/2}),

    mu, Sigma the mean and covariance over the M positions (normalised by M). The last
    (Bures) term goes through :func:`trace_sqrt` (Newton-Schulz: matrix products), whose
    gradient stays finite for a rank-deficient Sigma (fewer positions than channels, dead
    channels); the style's Sigma_s^{1/2} is the target's, computed once by
    :func:`psd_sqrtm`. Float error can leave the value a little below 0 when the two
    Gaussians coincide.

    Args:
      F: the generated image's responses, ``(..., H, W, N)``.
      target: :func:`wasserstein_target` of the style image.
      iterations: :func:`trace_sqrt`'s Newton steps; static.

    Returns:
      ``(...)``: one value per image.
    """
    n = F.shape[-1]
    mu, cov = _mean_cov(_positions(F))
    root = target.cov_sqrt
    trace = functools.partial(jnp.trace, axis1=-2, axis2=-1)
    w2 = (jnp.sum(jnp.square(mu - target.mean), axis=-1)
          + trace(cov) + trace(target.cov)
          - 2.0 * trace_sqrt(jnp.matmul(jnp.matmul(root, cov), root), iterations))
    return w2 / n


def _newton_schulz(K: Array, iterations: int) -> tuple[Array, Array, Array, Array]:
    """The coupled Newton-Schulz iteration on K / tr(K): ``(Y, Z, scale, total)``, Y ->
    (K / scale)^{1/2}, Z -> (K / scale)^{-1/2}."""
    n = K.shape[-1]
    total = jnp.trace(K, axis1=-2, axis2=-1)
    scale = jnp.where(total > 0, total, 1.0)  # K = 0: 0, and a zero gradient, not NaN
    eye = jnp.eye(n, dtype=K.dtype)
    Y, Z = K / scale[..., None, None], jnp.broadcast_to(eye, K.shape)

    def step(_, YZ):
        Y, Z = YZ
        T = 0.5 * (3.0 * eye - jnp.matmul(Z, Y))
        return jnp.matmul(Y, T), jnp.matmul(T, Z)

    Y, Z = jax.lax.fori_loop(0, iterations, step, (Y, Z))
    return Y, Z, scale, total


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def trace_sqrt(K: Array, iterations: int = 20) -> Array:
    """tr(K^{1/2}) of symmetric PSD matrices ``(..., N, N)`` by the coupled Newton-Schulz
    iteration (Higham 2008, "Functions of Matrices", eq. 6.35): matrix products only,
    where an eigendecomposition (:func:`psd_sqrtm`) costs about ten times as much on a
    CPU. K is scaled by its trace, so that the iteration converges; ``iterations`` Newton
    steps resolve eigenvalues down to about 1.5^-iterations of the trace.

    Its gradient is the derivative of tr(K^{1/2}), K^{-1/2} / 2, read off the iteration's
    own Z (which tends to (K / tr K)^{-1/2}) instead of differentiating through its
    steps, which cost twice the forward pass again. Eigenvalues too small to resolve
    leave Z at most 1.5^iterations there, so the gradient stays finite where K is
    rank-deficient (the exact derivative is not).

    Returns:
      ``(...)``: one value per matrix.
    """
    Y, _, scale, total = _newton_schulz(K, iterations)
    return jnp.where(total > 0, jnp.trace(Y, axis1=-2, axis2=-1) * jnp.sqrt(scale), 0.0)


def _trace_sqrt_fwd(K: Array, iterations: int) -> tuple[Array, tuple[Array, Array]]:
    Y, Z, scale, total = _newton_schulz(K, iterations)
    value = jnp.where(total > 0, jnp.trace(Y, axis1=-2, axis2=-1) * jnp.sqrt(scale), 0.0)
    # d tr(K^{1/2}) / dK = K^{-1/2} / 2 = Z / (2 sqrt(scale)), symmetric; 0 where K = 0
    grad = 0.25 * (Z + jnp.swapaxes(Z, -1, -2)) / jnp.sqrt(scale)[..., None, None]
    return value, (jnp.where((total > 0)[..., None, None], grad, 0.0), total)


def _trace_sqrt_bwd(iterations: int, residuals: tuple[Array, Array], g: Array) -> tuple[Array]:
    grad, _ = residuals
    return (g[..., None, None] * grad,)


trace_sqrt.defvjp(_trace_sqrt_fwd, _trace_sqrt_bwd)


def sliced_wasserstein_target(F_style: Array) -> Array:
    """The style image's responses as a set of M_s points in R^N, ``(..., M_s, N)``, for
    :func:`sliced_wasserstein_layer_loss` (Heitz, Vanhoey, Chambon & Belcour 2021, "A
    Sliced Wasserstein Loss for Neural Texture Synthesis", CVPR, eqs. 5-8). They are
    kept whole: the random projections change at every call."""
    return _positions(F_style)


def sliced_wasserstein_projected(F: Array, target: Array, directions: Array) -> Array:
    """Heitz, Vanhoey, Chambon & Belcour 2021, "A Sliced Wasserstein Loss for Neural
    Texture Synthesis" (CVPR), eqs. 5-8, for given directions: both sets of responses
    projected on each unit direction V, each projection sorted over positions (the 1-D
    optimal transport), and L = 1/(|V| M) sum_V sum_k (sort(F V)_k - sort(S V)_k)^2,
    the mean squared difference over projections and positions.

    When the counts of positions differ (M != M_s), the style's sorted projections are
    its empirical quantile function, linearly interpolated at the generated image's
    quantiles (k + 1/2) / M (the paper compares equal counts).

    Args:
      F: the generated image's responses, ``(..., H, W, N)``.
      target: :func:`sliced_wasserstein_target` of the style image, ``(..., M_s, N)``.
      directions: unit directions, ``(P, N)``.

    Returns:
      ``(...)``: one value per image.
    """
    X = _positions(F)
    style = _sorted_rows(jnp.matmul(jnp.asarray(target), jnp.swapaxes(directions, -1, -2)))
    return _transport_cost(_projections(X, directions), style)


def sliced_wasserstein_layer_loss(
    F: Array, target: Array, key: Array, num_projections: int | None = None
) -> Array:
    """Heitz, Vanhoey, Chambon & Belcour 2021, "A Sliced Wasserstein Loss for Neural
    Texture Synthesis" (CVPR), eqs. 5-8: :func:`sliced_wasserstein_projected` on
    ``num_projections`` (default N, as the paper) random unit directions drawn from
    ``key`` (normal samples, normalised). The same key gives the same directions, hence
    the same value; draw a new key per optimisation step. Every image of a batch is
    projected on the same directions.

    Args:
      F: the generated image's responses, ``(..., H, W, N)``.
      target: :func:`sliced_wasserstein_target` of the style image, ``(..., M_s, N)``.
      key: a ``jax.random`` key.
      num_projections: how many directions; static.

    Returns:
      ``(...)``: one value per image (mean over projections and positions).
    """
    n = F.shape[-1]
    count = n if num_projections is None else num_projections
    V = random_directions(key, count, n, jnp.promote_types(F.dtype, jnp.float32))
    return sliced_wasserstein_projected(F, target, V)


class SlicedTarget(NamedTuple):
    """Unit directions ``(P, N)`` fixed for a run and the style's responses projected on
    them and sorted over positions, one row per direction: ``(..., P, M_s)``."""

    directions: Array
    sorted_projections: Array


def sliced_wasserstein_fixed_target(F_style: Array, directions: Array) -> SlicedTarget:
    """:func:`sliced_wasserstein_projected`'s style side, done once for directions fixed
    for a whole run (Heitz et al. 2021, eqs. 5-8): each eval then sorts only the
    generated image's projections.

    Args:
      F_style: the style image's responses, ``(..., H, W, N)``.
      directions: unit directions, ``(P, N)``.
    """
    V = jnp.asarray(directions)
    return SlicedTarget(V, _sorted_rows(jnp.matmul(_positions(F_style), jnp.swapaxes(V, -1, -2))))


def sliced_wasserstein_fixed_layer_loss(F: Array, target: SlicedTarget) -> Array:
    """:func:`sliced_wasserstein_projected` against a :func:`sliced_wasserstein_fixed_target`:
    the same value, the style's sort done once. ``(...)``: one value per image."""
    return _transport_cost(_projections(_positions(F), target.directions),
                           target.sorted_projections)


def random_directions(key: Array, count: int, n: int, dtype=jnp.float32) -> Array:
    """``count`` random unit directions in R^n, ``(count, n)`` (normal samples scaled to
    length 1), as :func:`sliced_wasserstein_layer_loss` draws them."""
    V = jax.random.normal(key, (count, n), dtype)
    return V / jnp.linalg.norm(V, axis=-1, keepdims=True)


def histogram_target(F_style: Array, num_quantiles: int | None = None) -> Array:
    """Each channel's distribution of the style image's responses for
    :func:`histogram_layer_loss` (Risser, Wilmot & Barnes 2017, "Stable and Controllable
    Neural Texture Synthesis and Style Transfer Using Histogram Losses", sec. 4.1): its
    sorted responses, or its quantiles at ``num_quantiles`` levels (k + 1/2) / Q (a fixed,
    smaller size for a large style image).

    Args:
      F_style: the style image's responses, ``(..., H, W, N)``.
      num_quantiles: Q; None keeps all M_s sorted values. Static.

    Returns:
      ``(..., N, M_s or Q)``: one row per channel, sorted.
    """
    S = _sorted_rows(_positions(F_style))
    return S if num_quantiles is None else _quantiles(S, num_quantiles, axis=-1)


def histogram_layer_loss(F: Array, target: Array) -> Array:
    """Risser, Wilmot & Barnes 2017, "Stable and Controllable Neural Texture Synthesis
    and Style Transfer Using Histogram Losses", sec. 4.1-4.2, eq. 4:
    L = ||O - R(O)||^2 with R(O) the responses O remapped, channel by channel, to the
    style's histogram.

    Here the remapping is exact CDF matching by sorting rather than the paper's 256-bin
    histograms: each response is replaced by the style's value at its rank (its
    quantile (r + 1/2) / M, interpolated in the style's quantile function when the counts
    of positions differ). As in the paper R(O) is a constant (``stop_gradient``): the
    gradient is 2 (O - R(O)) / (M N). Normalised as the mean over positions and channels
    (the paper writes the squared Frobenius norm). The paper adds it to the Gram loss.

    Args:
      F: the generated image's responses, ``(..., H, W, N)``.
      target: :func:`histogram_target` of the style image, ``(..., N, M_s or Q)``.

    Returns:
      ``(...)``: one value per image.
    """
    # R(O) is the style's value at each response's rank: one sort of each channel (as a
    # row) and no argsort; its gradient is the elementwise 2 (O - R(O)) / (M N).
    return _transport_cost(jnp.swapaxes(_positions(F), -1, -2), target)


def _patches(F: Array, size: int) -> Array:
    """The size x size patches (stride 1, VALID) of ``(..., H, W, N)``, flattened as
    ``(..., (H - size + 1) (W - size + 1), size * size * N)`` (row, column, channel)."""
    F = jnp.asarray(F)
    *batch, h, w, n = F.shape
    ph, pw = h - size + 1, w - size + 1
    if ph < 1 or pw < 1:
        raise ValueError(f"a {h}x{w} map has no {size}x{size} patch")
    shifted = [F[..., dy:dy + ph, dx:dx + pw, :] for dy in range(size) for dx in range(size)]
    return jnp.stack(shifted, axis=-2).reshape(*batch, ph * pw, size * size * n)


class MRFTarget(NamedTuple):
    """The style image's patches ``(..., P_s, k*k*N)`` and their norms ``(..., P_s)``."""

    patches: Array
    norms: Array


def mrf_target(F_style: Array, patch_size: int = 3) -> MRFTarget:
    """The style patches Psi(Phi(x_s)) of Li & Wand 2016, "Combining Markov Random Fields
    and Convolutional Neural Networks for Image Synthesis" (CVPR), eq. 2: every
    ``patch_size`` x ``patch_size`` patch (stride 1, VALID) of the style image's
    responses, flattened, and its norm (for eq. 3's normalised cross-correlation).

    The paper also adds rotated and scaled copies of the style image; do that before
    (on the image) if wanted.

    Args:
      F_style: the style image's responses, ``(..., H, W, N)``.
      patch_size: k (the paper: 3); static.

    Returns:
      :class:`MRFTarget`.
    """
    patches = _patches(F_style, patch_size)
    return MRFTarget(patches, jnp.sqrt(jnp.sum(jnp.square(patches), axis=-1)))


def mrf_layer_loss(F: Array, target: MRFTarget, chunk: int = 256) -> Array:
    """Li & Wand 2016, "Combining Markov Random Fields and Convolutional Neural Networks
    for Image Synthesis" (CVPR), eqs. 2-3: E_s = 1/m sum_i ||Psi_i(F) - Psi_NN(i)(S)||^2
    over the m patches Psi_i of the generated image's responses (the size of the
    target's, stride 1, VALID), NN(i) = argmax_j Psi_i . Psi_j(S) / (|Psi_i| |Psi_j(S)|)
    the style patch of highest normalised cross-correlation (eq. 3).

    Normalised by the number of patches m (the paper sums). The matching is not
    differentiated (an argmax); the gradient is that of eq. 2 with NN fixed. The
    cross-correlations are computed ``chunk`` generated patches at a time (``lax.map``),
    so memory grows as chunk * P_s, not m * P_s; |Psi_i| does not change the argmax and
    is left out, a zero style patch scores 0.

    Args:
      F: the generated image's responses, ``(..., H, W, N)``.
      target: :func:`mrf_target` of the style image.
      chunk: generated patches per block; static.

    Returns:
      ``(...)``: one value per image.
    """
    n = F.shape[-1]
    depth = target.patches.shape[-1]
    size = math.isqrt(depth // n)
    if size * size * n != depth:
        raise ValueError(f"target patches of {depth} values do not fit {n} channels")
    G = _patches(F, size)
    normalised = target.patches / jnp.maximum(target.norms, 1e-12)[..., None]
    scores_to = jnp.swapaxes(normalised, -1, -2)

    def nearest(block: Array) -> Array:
        return jnp.argmax(jnp.matmul(block, scores_to), axis=-1)

    blocks, _ = _chunks(jax.lax.stop_gradient(G), min(chunk, G.shape[-2]))
    index = _unchunk(jax.lax.map(nearest, blocks), G.shape[-2])
    batch = jnp.broadcast_shapes(G.shape[:-2], target.patches.shape[:-2])
    matched = jax.lax.stop_gradient(_take_rows(target.patches, index, batch))
    return jnp.mean(jnp.sum(jnp.square(G - matched), axis=-1), axis=-1)


def _unit(X: Array, eps: float) -> Array:
    """Rows of ``(..., M, N)`` scaled to unit length, x / sqrt(|x|^2 + eps)."""
    return X * jax.lax.rsqrt(jnp.sum(jnp.square(X), axis=-1, keepdims=True) + eps)


class REMDTarget(NamedTuple):
    """The style image's responses at positions, scaled to unit length
    (``unit`` ``(..., M_s, N)``), and their mean ``(..., N)`` and covariance
    ``(..., N, N)`` (for :func:`remd_moment_loss`)."""

    unit: Array
    mean: Array
    cov: Array


def remd_target(F_style: Array, positions: Array | None = None, eps: float = 1e-8) -> REMDTarget:
    """What Kolkin, Salavon & Shakhnarovich 2019, "Style Transfer by Relaxed Optimal
    Transport and Self-Similarity" (STROTSS, CVPR), sec. 2.1 compare with: the style
    image's responses at its positions, as unit vectors for the cosine cost of eq. 2, and
    their mean and covariance (normalised by M_s) for the moment term of eq. 5.

    Args:
      F_style: the style image's responses, ``(..., H, W, N)``.
      positions: optional indices into the H * W positions (row-major) to keep, ``(K,)``
        (STROTSS samples at most ~1024).
      eps: added to |x|^2 before scaling to unit length, for all-zero responses.

    Returns:
      :class:`REMDTarget`.
    """
    S = _positions(F_style)
    if positions is not None:
        S = jnp.take(S, jnp.asarray(positions), axis=-2)
    mu, cov = _mean_cov(S)
    return REMDTarget(_unit(S, eps), mu, cov)


def _nearest_both_ways(U: Array, V: Array, chunk: int) -> tuple[Array, Array]:
    """For the cost C_ij = -U_i . V_j: argmin_j for each row i ``(*batch, M)`` and argmin_i
    for each column j ``(*batch, M_s)``, over chunk x chunk blocks with running minima
    (memory grows as chunk^2, not M * M_s)."""
    m, ms = U.shape[-2], V.shape[-2]
    batch = jnp.broadcast_shapes(U.shape[:-2], V.shape[:-2])
    dtype = jnp.result_type(U.dtype, V.dtype)
    Ub, rows = _chunks(U, chunk)
    Vb, cols = _chunks(V, chunk)
    row_ok = jnp.arange(rows * chunk).reshape(rows, chunk) < m
    col_ok = jnp.arange(cols * chunk).reshape(cols, chunk) < ms
    inf = jnp.array(jnp.inf, dtype)

    def over_rows(column_best, row_block):
        u, a, u_ok = row_block

        def over_columns(row_best, column_block):
            v, b, v_ok, best, where = column_block
            C = -jnp.matmul(u, jnp.swapaxes(v, -1, -2))
            C = jnp.where(u_ok[:, None] & v_ok[None, :], C, inf)
            low, at = jnp.min(C, axis=-1), (jnp.argmin(C, axis=-1) + b * chunk).astype(jnp.int32)
            better = low < row_best[0]
            row_best = (jnp.where(better, low, row_best[0]), jnp.where(better, at, row_best[1]))
            low, at = jnp.min(C, axis=-2), (jnp.argmin(C, axis=-2) + a * chunk).astype(jnp.int32)
            better = low < best
            return row_best, (jnp.where(better, low, best), jnp.where(better, at, where))

        start = (jnp.full((*batch, chunk), inf), jnp.zeros((*batch, chunk), jnp.int32))
        (_, row_index), column_best = jax.lax.scan(
            over_columns, start, (Vb, jnp.arange(cols), col_ok, *column_best))
        return column_best, row_index

    start = (jnp.full((cols, *batch, chunk), inf), jnp.zeros((cols, *batch, chunk), jnp.int32))
    (_, column_index), row_index = jax.lax.scan(over_rows, start, (Ub, jnp.arange(rows), row_ok))
    return _unchunk(row_index, m), _unchunk(column_index, ms)


def remd_layer_loss(
    F: Array,
    target: REMDTarget,
    chunk: int = 256,
    positions: Array | None = None,
    eps: float = 1e-8,
) -> Array:
    """The relaxed earth mover's distance of Kolkin, Salavon & Shakhnarovich 2019, "Style
    Transfer by Relaxed Optimal Transport and Self-Similarity" (STROTSS, CVPR), sec. 2.1,
    eqs. 2-4, between the generated image's responses F_i and the style's S_j at
    positions, with the cosine cost C_ij = 1 - F_i . S_j / (|F_i| |S_j|) (eq. 2):

        R_EMD = max(1/M sum_i min_j C_ij, 1/M_s sum_j min_i C_ij).

    Its own normalisation: both terms are means (eq. 4), so the value lies in [0, 2]. The
    minima are found in ``chunk`` x ``chunk`` blocks of C with running minima, both ways at
    once, so any size fits in bounded memory; the choice of each minimum is not
    differentiated (at a generic point the gradient of a min is that of its minimiser's
    cost, which is what is returned). Per layer here; STROTSS concatenates several
    layers' responses (hypercolumns) at ~1024 sampled positions and adds a colour term.

    Args:
      F: the generated image's responses, ``(..., H, W, N)``.
      target: :func:`remd_target` of the style image.
      chunk: positions per block side; static.
      positions: optional indices into the H * W positions (row-major) to use, ``(K,)``.
      eps: as in :func:`remd_target`.

    Returns:
      ``(...)``: one value per image.
    """
    X = _positions(F)
    if positions is not None:
        X = jnp.take(X, jnp.asarray(positions), axis=-2)
    U, V = _unit(X, eps), target.unit
    batch = jnp.broadcast_shapes(U.shape[:-2], V.shape[:-2])
    block = min(chunk, max(U.shape[-2], V.shape[-2]))
    to_style, to_image = _nearest_both_ways(
        jax.lax.stop_gradient(U), jax.lax.stop_gradient(V), block)
    rows = 1.0 - jnp.sum(U * _take_rows(V, to_style, batch), axis=-1)
    columns = 1.0 - jnp.sum(_take_rows(U, to_image, batch) * V, axis=-1)
    return jnp.maximum(jnp.mean(rows, axis=-1), jnp.mean(columns, axis=-1))


def remd_moment_loss(F: Array, target: REMDTarget, positions: Array | None = None) -> Array:
    """The moment-matching term of Kolkin, Salavon & Shakhnarovich 2019, "Style Transfer by
    Relaxed Optimal Transport and Self-Similarity" (STROTSS, CVPR), sec. 2.1, eq. 5:
    l_m = 1/N ||mu - mu_s||_1 + 1/N^2 ||Sigma - Sigma_s||_1, the means and covariances of
    the responses over positions (L1, entrywise).

    The covariances are normalised by the count of positions, M (an unbiased M - 1
    differs by 0.1% at STROTSS's ~1024 samples).

    Args:
      F: the generated image's responses, ``(..., H, W, N)``.
      target: :func:`remd_target` of the style image.
      positions: optional indices into the H * W positions (row-major) to use, ``(K,)``.

    Returns:
      ``(...)``: one value per image.
    """
    X = _positions(F)
    if positions is not None:
        X = jnp.take(X, jnp.asarray(positions), axis=-2)
    mu, cov = _mean_cov(X)
    return (jnp.mean(jnp.abs(mu - target.mean), axis=-1)
            + jnp.mean(jnp.abs(cov - target.cov), axis=(-2, -1)))
