"""Colour preservation: keep the content photo's colours while transferring a painting's style.

The two methods of Gatys, Bethge, Hertzmann & Shechtman (2016), *Preserving Color in Neural
Artistic Style Transfer* (arXiv:1606.05897):

- **Colour histogram matching** (sec. 2.1): before the transfer, the style image's pixels are
  transformed linearly, ``x' = A x + b``, so that their mean and covariance equal the content
  image's, with ``A = Σ_c^{1/2} Σ_s^{-1/2}`` (symmetric square roots) and
  ``b = μ_c - A μ_s`` (:func:`match_color`).
- **Luminance-only transfer** (sec. 2.2): the style is transferred on the luminance channel
  only. Content and style are reduced to their YIQ luminance ``Y`` (shown to the network as
  gray RGB, :func:`as_gray_rgb`), the style's luminance first matched to the content's mean
  and standard deviation (:func:`match_luminance`); afterwards the output's ``Y`` is combined
  with the content's ``I`` and ``Q`` colour channels (:func:`combine_luminance`).

:func:`prepare` and :func:`finish` apply a method (one of :data:`PRESERVE_COLOR`) to the
images before and after the optimisation.

Every function works on numpy float RGB images of shape ``(H, W, 3)`` with values in
``[0, 1]``, computes in float64 and returns float32; every image it returns is clipped to
``[0, 1]``, except the YIQ arrays of :func:`rgb_to_yiq` and :func:`yiq_to_rgb`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jstyle.options import PRESERVE_COLOR

__all__ = ["PRESERVE_COLOR", "match_color", "rgb_to_yiq", "yiq_to_rgb", "luminance",
    "match_luminance", "combine_luminance", "prepare", "finish"]

RGB_TO_YIQ: np.ndarray = np.array(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ],
    dtype=np.float64,
)
"""NTSC (FCC) RGB -> YIQ matrix: ``yiq = RGB_TO_YIQ @ rgb`` per pixel. Its ``Y`` row sums to 1."""

YIQ_TO_RGB: np.ndarray = np.linalg.inv(RGB_TO_YIQ)
"""The exact inverse of :data:`RGB_TO_YIQ`."""

RGB_TO_YIQ.setflags(write=False)
YIQ_TO_RGB.setflags(write=False)

COVARIANCE_EPS = 1e-5
"""Added to the diagonal of both covariances in :func:`match_color`, so that flat or gray
images (singular covariances) give finite transforms."""


def _rgb(img: np.ndarray, name: str = "image") -> np.ndarray:
    """``img`` as a float64 array, checked to be an RGB image ``(H, W, 3)``."""
    array = np.asarray(img, dtype=np.float64)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (H, W, 3) RGB image, got shape {array.shape}")
    return array


def _plane(img: np.ndarray, name: str) -> np.ndarray:
    """``img`` as a float64 array, checked to be a non-empty single-channel image ``(H, W)``."""
    array = np.asarray(img, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty (H, W) image, got shape {array.shape}")
    return array


def _unit(array: np.ndarray) -> np.ndarray:
    """Clipped to ``[0, 1]`` as float32."""
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def _sym_power(matrix: np.ndarray, power: float) -> np.ndarray:
    """``matrix ** power`` for a symmetric positive-definite matrix, by eigendecomposition."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    eigenvalues = np.maximum(eigenvalues, np.finfo(np.float64).tiny)
    return (eigenvectors * eigenvalues**power) @ eigenvectors.T


def match_color(style: np.ndarray, content: np.ndarray, eps: float = COVARIANCE_EPS) -> np.ndarray:
    """The style image recoloured so its pixels' mean and covariance equal the content's.

    The paper's colour histogram matching (sec. 2.1), applied to the style image before the
    transfer: ``x' = A (x - μ_s) + μ_c`` with ``A = Σ_c^{1/2} Σ_s^{-1/2}``, the symmetric
    square roots taken of ``Σ + eps·I``. The two images may differ in size.

    Args:
        style: the style image, ``(H_s, W_s, 3)`` in ``[0, 1]``.
        content: the content image, ``(H_c, W_c, 3)`` in ``[0, 1]``.
        eps: added to the diagonal of both covariances, for flat or gray images.

    Returns:
        The transformed style image, float32 ``(H_s, W_s, 3)``, clipped to ``[0, 1]``.
    """
    style_pixels = _rgb(style, "style").reshape(-1, 3)
    content_pixels = _rgb(content, "content").reshape(-1, 3)
    mean_s = style_pixels.mean(axis=0)
    mean_c = content_pixels.mean(axis=0)
    centred_s = style_pixels - mean_s
    centred_c = content_pixels - mean_c
    identity = np.eye(3)
    cov_s = centred_s.T @ centred_s / len(style_pixels) + eps * identity
    cov_c = centred_c.T @ centred_c / len(content_pixels) + eps * identity
    A = _sym_power(cov_c, 0.5) @ _sym_power(cov_s, -0.5)
    matched = centred_s @ A.T + mean_c
    return _unit(matched.reshape(np.shape(style)))


def rgb_to_yiq(img: np.ndarray) -> np.ndarray:
    """An RGB image ``(H, W, 3)`` in YIQ (float32, not clipped: ``I`` and ``Q`` are signed)."""
    return (_rgb(img) @ RGB_TO_YIQ.T).astype(np.float32)


def yiq_to_rgb(img: np.ndarray) -> np.ndarray:
    """A YIQ image ``(H, W, 3)`` back in RGB (float32, not clipped): undoes :func:`rgb_to_yiq`."""
    return (_rgb(img) @ YIQ_TO_RGB.T).astype(np.float32)


def luminance(img: np.ndarray) -> np.ndarray:
    """The YIQ luminance ``Y`` of an RGB image: float32 ``(H, W)`` in ``[0, 1]``."""
    return _unit(_rgb(img) @ RGB_TO_YIQ[0])


def match_luminance(style_y: np.ndarray, content_y: np.ndarray) -> np.ndarray:
    """The style's luminance shifted and scaled to the content's mean and standard deviation.

    The paper's ``L_s' = σ_c / σ_s (L_s - μ_s) + μ_c`` (sec. 2.2). A flat style (``σ_s = 0``)
    becomes the content's mean.

    Args:
        style_y: the style image's luminance, ``(H_s, W_s)``.
        content_y: the content image's luminance, ``(H_c, W_c)``.

    Returns:
        The matched style luminance, float32 ``(H_s, W_s)``, clipped to ``[0, 1]``.
    """
    style = _plane(style_y, "style_y")
    content = _plane(content_y, "content_y")
    mean_s, std_s = style.mean(), style.std()
    mean_c, std_c = content.mean(), content.std()
    scale = std_c / std_s if std_s > 0 else 0.0
    return _unit(scale * (style - mean_s) + mean_c)


def as_gray_rgb(y: np.ndarray) -> np.ndarray:
    """A luminance image ``(H, W)`` repeated over three channels: float32 ``(H, W, 3)``.

    This is what the network sees in a luminance-only transfer.
    """
    plane = _plane(y, "y")
    return _unit(np.repeat(plane[:, :, None], 3, axis=2))


def combine_luminance(output_rgb: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The output's luminance with the content's colour: the end of a luminance-only transfer.

    Takes ``Y`` of ``output_rgb`` (for the gray output of a luminance-only transfer, the mean
    of its three channels) and ``I``, ``Q`` of ``content``, and converts back to RGB.

    Args:
        output_rgb: the stylised image, ``(H, W, 3)``.
        content: the content image, the same shape.

    Returns:
        The recoloured output, float32 ``(H, W, 3)``, clipped to ``[0, 1]``.
    """
    output = _rgb(output_rgb, "output_rgb")
    colour = _rgb(content, "content")
    if output.shape != colour.shape:
        raise ValueError(
            f"output_rgb and content must have the same shape, got {output.shape} and "
            f"{colour.shape}"
        )
    yiq = colour @ RGB_TO_YIQ.T
    yiq[:, :, 0] = output @ RGB_TO_YIQ[0]
    return _unit(yiq @ YIQ_TO_RGB.T)


def _check_method(method: str) -> None:
    """Raises ValueError unless ``method`` is one of :data:`PRESERVE_COLOR`."""
    if method not in PRESERVE_COLOR:
        raise ValueError(
            f"preserve_color must be one of {', '.join(PRESERVE_COLOR)}; got {method!r}"
        )


def prepare(
    method: str, content: np.ndarray, styles: Sequence[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The content and style images the network should see, for a colour-preservation method.

    - ``"none"``: unchanged;
    - ``"histogram"``: each style colour-matched to the content (:func:`match_color`);
    - ``"luminance"``: the content and every style replaced by the gray RGB of their
      luminance, each style's luminance first matched to the content's (:func:`match_luminance`).

    Args:
        method: one of :data:`PRESERVE_COLOR`.
        content: the content image, ``(H, W, 3)`` in ``[0, 1]``.
        styles: the style images, each ``(H_i, W_i, 3)`` in ``[0, 1]``.

    Returns:
        ``(content_for_network, styles_for_network)``, the styles as a list.

    Raises:
        ValueError: ``method`` is not one of :data:`PRESERVE_COLOR`.
    """
    _check_method(method)
    if method == "none":
        return content, list(styles)
    if method == "histogram":
        return content, [match_color(style, content) for style in styles]
    content_y = luminance(content)
    gray_styles = [as_gray_rgb(match_luminance(luminance(style), content_y)) for style in styles]
    return as_gray_rgb(content_y), gray_styles


def finish(method: str, output: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The final image from the optimised ``output``, for a colour-preservation method.

    ``"luminance"`` recombines the output's luminance with the content's colour
    (:func:`combine_luminance`; ``content`` is the original colour content image, the shape of
    ``output``); ``"none"`` and ``"histogram"`` return ``output`` unchanged.

    Raises:
        ValueError: ``method`` is not one of :data:`PRESERVE_COLOR`.
    """
    _check_method(method)
    if method == "luminance":
        return combine_luminance(output, content)
    return output
