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
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

__all__ = ["gram_matrix", "content_loss", "style_layer_loss", "style_loss",
    "guided_gram_matrix", "guided_style_layer_loss", "total_variation_loss", "total_loss"]

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
    h, w, n = F.shape[-3:]
    m = h * w
    G = gram_matrix(F)
    return jnp.sum(jnp.square(G - A), axis=(-2, -1)) / (4.0 * n**2 * m**2)


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
    h, w, n = F.shape[-3:]
    area = jnp.sum(T, axis=(-2, -1))
    G = guided_gram_matrix(F, T)
    scale = jnp.where(area > 0, 1.0 / (4.0 * n**2 * h * w * jnp.maximum(area, 1e-12)), 0.0)
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
