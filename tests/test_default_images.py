"""The built-in default images: the generated style painting and the bundled cat photo."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from jstyle import default_images
from jstyle.default_images import (
    DEFAULT_CONTENT_NAME,
    default_content_image,
    swirl_painting,
)


@pytest.fixture(scope="module")
def painting() -> np.ndarray:
    return swirl_painting(192, 160)


def _neighbour_correlation(gray: np.ndarray) -> tuple[float, float]:
    cx = np.corrcoef(gray[:, 1:].ravel(), gray[:, :-1].ravel())[0, 1]
    cy = np.corrcoef(gray[1:].ravel(), gray[:-1].ravel())[0, 1]
    return float(cx), float(cy)


def test_shape_dtype_range(painting: np.ndarray) -> None:
    assert painting.shape == (192, 160, 3)
    assert painting.dtype == np.float32
    assert np.isfinite(painting).all()
    assert painting.min() >= 0.0 and painting.max() <= 1.0


def test_deterministic_per_seed(painting: np.ndarray) -> None:
    np.testing.assert_array_equal(painting, swirl_painting(192, 160))
    np.testing.assert_array_equal(painting, swirl_painting(192, 160, seed=0))
    other = swirl_painting(192, 160, seed=1)
    assert np.abs(other - painting).mean() > 0.05


def test_is_a_picture_not_noise(painting: np.ndarray) -> None:
    gray = painting.astype(np.float64).mean(axis=-1)
    cx, cy = _neighbour_correlation(gray)
    assert cx > 0.8 and cy > 0.8
    # White noise of the same size has no such correlation: the check can fail.
    noise = np.random.default_rng(0).random(gray.shape)
    assert max(_neighbour_correlation(noise)) < 0.2


def test_has_brush_stroke_texture(painting: np.ndarray) -> None:
    """Not a smooth gradient: a visible amount of fine detail on top of the large forms."""
    gray = painting.astype(np.float64).mean(axis=-1)
    detail = gray - ndimage.gaussian_filter(gray, 2.0)
    assert detail.std() > 0.03


def test_bold_palette(painting: np.ndarray) -> None:
    rgb = painting.astype(np.float64)
    r, b = rgb[..., 0], rgb[..., 2]
    assert (rgb.std(axis=(0, 1)) > 0.15).all()
    assert (b > r + 0.25).mean() > 0.3  # mostly blue sky
    assert (r > b + 0.25).mean() > 0.01  # yellow/orange stars and swirls
    assert (rgb.max(axis=-1) < 0.25).mean() > 0.02  # deep dark strokes
    assert (rgb.min(axis=-1) > 0.7).mean() > 0.005  # whitish highlights


def test_look_scales_with_size() -> None:
    """Strokes scale with the image: colour statistics agree at two sizes."""
    small = swirl_painting(96, 96).reshape(-1, 3)
    large = swirl_painting(192, 192).reshape(-1, 3)
    np.testing.assert_allclose(small.mean(axis=0), large.mean(axis=0), atol=0.05)
    np.testing.assert_allclose(small.std(axis=0), large.std(axis=0), atol=0.05)


def test_rejects_tiny_sizes() -> None:
    with pytest.raises(ValueError):
        swirl_painting(4, 64)


def test_default_content_image() -> None:
    pytest.importorskip("skimage")
    image = default_content_image()
    assert image.shape == (300, 451, 3)
    assert image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert image.max() > 0.5  # scaled from 0-255, not merely cast
    assert DEFAULT_CONTENT_NAME == "chelsea"


def test_default_content_image_without_skimage(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from jstyle.errors import JStyleError

    real_import = builtins.__import__

    def no_skimage(name: str, *args: object, **kwargs: object) -> object:
        if name == "skimage" or name.startswith("skimage."):
            raise ImportError("No module named 'skimage'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_skimage)
    import importlib.util

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "skimage" else real_find(name, *a))
    with pytest.raises(JStyleError, match="pip install scikit-image"):
        default_content_image()


def test_default_content_image_is_skimages_chelsea_read_without_importing_it() -> None:
    data = pytest.importorskip("skimage.data")
    expected = (np.asarray(data.chelsea(), dtype=np.float32) / 255.0)[..., :3]
    np.testing.assert_array_equal(default_content_image(), expected)


def test_default_style_image_is_drawn_once_and_kept(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    drawn = default_images.default_style_image(40, 48)
    np.testing.assert_array_equal(drawn, swirl_painting(40, 48))
    (kept,) = (tmp_path / "jstyle" / "default-images").glob("swirl_painting-40x48-*.npy")
    np.save(kept, np.zeros((40, 48, 3), np.float32))  # read back, not drawn again
    assert not default_images.default_style_image(40, 48).any()
    # a cache folder that cannot be written: drawn, and nothing kept
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    np.testing.assert_array_equal(default_images.default_style_image(40, 48), drawn)


def test_mosaic_painting_is_a_deterministic_warm_picture() -> None:
    mosaic = default_images.mosaic_painting(192, 256)
    assert mosaic.shape == (192, 256, 3) and mosaic.dtype == np.float32
    assert mosaic.min() >= 0.0 and mosaic.max() <= 1.0
    np.testing.assert_array_equal(mosaic, default_images.mosaic_painting(192, 256))
    assert np.abs(default_images.mosaic_painting(192, 256, seed=1) - mosaic).mean() > 0.05
    cx, cy = _neighbour_correlation(mosaic.astype(np.float64).mean(axis=-1))
    assert cx > 0.8 and cy > 0.8  # panes, not noise
    red, _, blue = mosaic.reshape(-1, 3).mean(axis=0)
    assert red > blue + 0.15  # warm, where swirl_painting is blue
    lead = mosaic.max(axis=-1) < 0.1
    assert 0.05 < lead.mean() < 0.5  # dark lead lines between the panes
    with pytest.raises(ValueError, match="at least 8x8"):
        default_images.mosaic_painting(4, 64)
