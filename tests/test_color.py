"""Colour preservation (Gatys, Bethge, Hertzmann & Shechtman 2016): histogram and luminance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from jstyle import color
from jstyle.color import (
    PRESERVE_COLOR,
    RGB_TO_YIQ,
    YIQ_TO_RGB,
    as_gray_rgb,
    combine_luminance,
    finish,
    luminance,
    match_color,
    match_luminance,
    prepare,
    rgb_to_yiq,
    yiq_to_rgb,
)


def gaussian_image(
    rng: np.random.Generator, shape: tuple[int, int], mean: list[float], cov: np.ndarray
) -> np.ndarray:
    """A float32 image whose pixels are drawn from N(mean, cov) (small cov: stays in [0, 1])."""
    pixels = rng.multivariate_normal(mean, cov, size=shape)
    assert pixels.min() > 0.0 and pixels.max() < 1.0
    return pixels.astype(np.float32)


def stats(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) covariance of an image's pixels, in float64."""
    pixels = img.reshape(-1, 3).astype(np.float64)
    return pixels.mean(axis=0), np.cov(pixels, rowvar=False, bias=True)


def check_unit_image(img: np.ndarray, shape: tuple[int, ...]) -> None:
    """The contract of every image the module returns."""
    assert isinstance(img, np.ndarray)
    assert img.shape == shape
    assert img.dtype == np.float32
    assert np.all(np.isfinite(img))
    assert img.min() >= 0.0 and img.max() <= 1.0


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def content(rng) -> np.ndarray:
    cov = np.array([[4.0, 1.5, 0.5], [1.5, 3.0, -0.8], [0.5, -0.8, 2.0]]) * 1e-3
    return gaussian_image(rng, (24, 20), [0.55, 0.45, 0.4], cov)


@pytest.fixture
def style(rng) -> np.ndarray:
    cov = np.array([[2.0, -0.6, 0.3], [-0.6, 5.0, 1.2], [0.3, 1.2, 3.0]]) * 1e-3
    return gaussian_image(rng, (16, 18), [0.4, 0.5, 0.6], cov)


# --- YIQ ---------------------------------------------------------------------------------


def test_yiq_matrices_are_inverses():
    np.testing.assert_allclose(RGB_TO_YIQ @ YIQ_TO_RGB, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(RGB_TO_YIQ[0].sum(), 1.0)


def test_yiq_round_trip(rng):
    img = rng.random((7, 5, 3)).astype(np.float32)
    yiq = rgb_to_yiq(img)
    assert yiq.dtype == np.float32 and yiq.shape == img.shape
    np.testing.assert_allclose(yiq_to_rgb(yiq), img, atol=1e-6)
    np.testing.assert_allclose(rgb_to_yiq(yiq_to_rgb(yiq)), yiq, atol=1e-6)


def test_gray_has_no_chroma_and_y_is_the_gray_level():
    gray = np.full((3, 4, 3), 0.3, dtype=np.float32)
    yiq = rgb_to_yiq(gray)
    np.testing.assert_allclose(yiq[..., 0], 0.3, atol=1e-6)
    np.testing.assert_allclose(yiq[..., 1:], 0.0, atol=1e-6)
    np.testing.assert_allclose(luminance(gray), 0.3, atol=1e-6)


def test_luminance_is_the_y_channel(rng):
    img = rng.random((6, 9, 3)).astype(np.float32)
    y = luminance(img)
    assert y.shape == (6, 9) and y.dtype == np.float32
    np.testing.assert_allclose(y, rgb_to_yiq(img)[..., 0], atol=1e-6)


def test_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_yiq(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="RGB"):
        match_color(np.zeros((4, 4, 4)), np.zeros((4, 4, 3)))


# --- colour histogram matching (sec. 2.1) ------------------------------------------------


def test_match_color_gives_the_contents_mean_and_covariance(style, content):
    matched = match_color(style, content)
    check_unit_image(matched, style.shape)
    mean_m, cov_m = stats(matched)
    mean_c, cov_c = stats(content)
    mean_s, cov_s = stats(style)
    assert not np.allclose(mean_s, mean_c, atol=1e-2)  # the test means something
    np.testing.assert_allclose(mean_m, mean_c, atol=1e-4)
    np.testing.assert_allclose(cov_m, cov_c, atol=3e-5)  # entries are ~1e-3; eps is 1e-5


def test_match_color_is_symmetric_square_root_transform(style, content):
    """The paper's A = Σ_c^{1/2} Σ_s^{-1/2}: matched pixels are an affine map of the style's."""
    matched = match_color(style, content).reshape(-1, 3).astype(np.float64)
    source = np.c_[style.reshape(-1, 3), np.ones(style.shape[0] * style.shape[1])]
    solution, *_ = np.linalg.lstsq(source, matched, rcond=None)
    A = solution[:3].T
    _, cov_c = stats(content)
    _, cov_s = stats(style)
    eye = np.eye(3) * color.COVARIANCE_EPS

    def sqrtm(m):
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(w)) @ v.T

    expected = sqrtm(cov_c + eye) @ np.linalg.inv(sqrtm(cov_s + eye))
    np.testing.assert_allclose(A, expected, atol=1e-3)


def test_match_color_leaves_content_coloured_image_unchanged(content):
    np.testing.assert_allclose(match_color(content, content), content, atol=1e-5)


def test_match_color_gray_style_is_finite(content, rng):
    gray = np.repeat(rng.random((10, 12, 1)), 3, axis=2).astype(np.float32)
    matched = match_color(gray, content)
    check_unit_image(matched, gray.shape)
    # the gray style gets the content's mean colour (its one direction of variation is kept)
    np.testing.assert_allclose(stats(matched)[0], stats(content)[0], atol=1e-5)


def test_match_color_flat_style_becomes_content_mean(content):
    flat = np.full((5, 6, 3), 0.8, dtype=np.float32)
    matched = match_color(flat, content)
    check_unit_image(matched, flat.shape)
    np.testing.assert_allclose(matched, np.broadcast_to(stats(content)[0], flat.shape), atol=1e-6)


# --- luminance-only transfer (sec. 2.2) --------------------------------------------------


def test_match_luminance_gives_the_contents_mean_and_std(rng):
    style_y = (0.3 + 0.05 * rng.standard_normal((20, 15))).astype(np.float32)
    content_y = (0.6 + 0.1 * rng.standard_normal((12, 17))).astype(np.float32)
    matched = match_luminance(style_y, content_y)
    assert matched.shape == style_y.shape and matched.dtype == np.float32
    assert matched.min() > 0.0 and matched.max() < 1.0  # no clipping happened
    np.testing.assert_allclose(matched.mean(), content_y.mean(), atol=1e-5)
    np.testing.assert_allclose(matched.std(), content_y.std(), atol=1e-5)
    # an affine map with positive slope: the style's order is kept
    np.testing.assert_array_equal(np.argsort(matched, axis=None), np.argsort(style_y, axis=None))


def test_match_luminance_flat_style_is_content_mean(rng):
    content_y = rng.random((5, 5)).astype(np.float32)
    matched = match_luminance(np.full((3, 4), 0.2, dtype=np.float32), content_y)
    np.testing.assert_allclose(matched, content_y.mean(), atol=1e-6)


def test_as_gray_rgb(rng):
    y = rng.random((4, 7)).astype(np.float32)
    gray = as_gray_rgb(y)
    check_unit_image(gray, (4, 7, 3))
    for channel in range(3):
        np.testing.assert_array_equal(gray[..., channel], y)
    np.testing.assert_allclose(luminance(gray), y, atol=1e-6)


def test_combine_luminance_keeps_output_y_and_content_iq(content, rng):
    output = rng.normal(0.5, 0.05, size=content.shape).astype(np.float32)
    combined = combine_luminance(output, content)
    check_unit_image(combined, content.shape)
    assert combined.min() > 0.0 and combined.max() < 1.0  # no clipping happened
    yiq = rgb_to_yiq(combined)
    np.testing.assert_allclose(yiq[..., 0], rgb_to_yiq(output)[..., 0], atol=1e-5)
    np.testing.assert_allclose(yiq[..., 1:], rgb_to_yiq(content)[..., 1:], atol=1e-5)


def test_combine_luminance_of_gray_output_uses_channel_mean(content, rng):
    gray = as_gray_rgb(rng.normal(0.5, 0.05, size=content.shape[:2]).astype(np.float32))
    combined = combine_luminance(gray, content)
    np.testing.assert_allclose(rgb_to_yiq(combined)[..., 0], gray.mean(axis=2), atol=1e-5)


def test_combine_luminance_rejects_shape_mismatch(content):
    with pytest.raises(ValueError, match="same shape"):
        combine_luminance(content[:-1], content)


# --- prepare / finish --------------------------------------------------------------------


def test_preserve_color_choices():
    assert PRESERVE_COLOR == ("none", "luminance", "histogram")


@pytest.mark.parametrize("method", PRESERVE_COLOR)
def test_prepare_and_finish(method, content, style, rng):
    styles = [style, rng.random((9, 11, 3)).astype(np.float32)]
    net_content, net_styles = prepare(method, content, styles)
    check_unit_image(net_content, content.shape)
    assert isinstance(net_styles, list) and len(net_styles) == 2
    for before, after in zip(styles, net_styles, strict=True):
        check_unit_image(after, before.shape)
    output = rng.random(content.shape).astype(np.float32)
    final = finish(method, output, content)
    check_unit_image(final, content.shape)

    if method == "none":
        assert net_content is content
        assert all(a is b for a, b in zip(net_styles, styles, strict=True))
        assert final is output
    elif method == "histogram":
        assert net_content is content
        np.testing.assert_allclose(net_styles[0], match_color(style, content))
        np.testing.assert_allclose(stats(net_styles[0])[0], stats(content)[0], atol=1e-4)
        assert final is output
    else:
        for img in [net_content, *net_styles]:
            np.testing.assert_array_equal(img[..., 0], img[..., 1])
            np.testing.assert_array_equal(img[..., 0], img[..., 2])
        np.testing.assert_allclose(net_content[..., 0], luminance(content), atol=1e-6)
        content_y = luminance(content)
        np.testing.assert_allclose(net_styles[0][..., 0].mean(), content_y.mean(), atol=1e-4)
        np.testing.assert_allclose(net_styles[0][..., 0].std(), content_y.std(), atol=1e-4)
        np.testing.assert_allclose(final, combine_luminance(output, content))


@pytest.mark.parametrize("method", ["", "None", "yiq", "color"])
def test_unknown_method_is_refused(method, content):
    with pytest.raises(ValueError, match="none, luminance, histogram"):
        prepare(method, content, [content])
    with pytest.raises(ValueError, match="none, luminance, histogram"):
        finish(method, content, content)


# --- property: every function returns finite float32 images in [0, 1] --------------------

unit = st.floats(0.0, 1.0, width=32)


@st.composite
def images(draw, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Random small RGB images, sometimes gray or flat (singular covariances)."""
    if shape is None:
        shape = (draw(st.integers(2, 16)), draw(st.integers(2, 16)))
    kind = draw(st.sampled_from(["random", "gray", "flat"]))
    if kind == "flat":
        return np.full((*shape, 3), draw(unit), dtype=np.float32)
    channels = 1 if kind == "gray" else 3
    img = draw(arrays(np.float32, (*shape, channels), elements=unit))
    return np.repeat(img, 3, axis=2) if kind == "gray" else img


@st.composite
def scenes(draw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A content image, an output of the same shape and a style of any size."""
    content = draw(images())
    return content, draw(images(content.shape[:2])), draw(images())


@settings(max_examples=25, deadline=None)
@given(scenes())
def test_every_function_returns_unit_float32(scene):
    content, output, style = scene
    shape = content.shape
    check_unit_image(match_color(style, content), style.shape)
    check_unit_image(luminance(content), shape[:2])
    check_unit_image(match_luminance(luminance(style), luminance(content)), style.shape[:2])
    check_unit_image(as_gray_rgb(luminance(content)), shape)
    check_unit_image(combine_luminance(output, content), shape)
    for method in PRESERVE_COLOR:
        net_content, (net_style,) = prepare(method, content, [style])
        check_unit_image(net_content, shape)
        check_unit_image(net_style, style.shape)
        check_unit_image(finish(method, output, content), shape)
