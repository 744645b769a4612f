"""Pixel-noise measures of a delivered image, and the 8-bit quantisation they and the PNGs
share."""

import numpy as np
import pytest

from jstyle.images import from_array
from jstyle.metrics import neighbour_difference, noise_ratio
from jstyle.preprocessing import delivered, to_8bit


def test_to_8bit_is_what_the_png_stores(rng):
    image = rng.uniform(-0.2, 1.2, (5, 7, 3)).astype(np.float32)
    image[0, 0, 0] = np.nan
    pixels = to_8bit(image)
    np.testing.assert_array_equal(pixels, np.asarray(from_array(image)))
    assert pixels[0, 0, 0] == 0 and pixels.min() == 0 and pixels.max() == 255
    assert to_8bit(np.full((1, 1, 3), 0.5 / 255, np.float32))[0, 0, 0] == 1  # half rounds up
    np.testing.assert_array_equal(delivered(image), pixels / np.float32(255))
    assert np.abs(delivered(np.clip(image, 0, 1)) - np.nan_to_num(np.clip(image, 0, 1))).max() \
        <= 0.5 / 255 + 1e-7


def test_neighbour_difference_by_hand():
    image = np.zeros((2, 3, 3), np.float32)
    image[:, 1] = 1.0  # a white middle column
    # rows: no vertical differences; columns: |0-255| and |255-0| in every row and channel
    assert neighbour_difference(image) == pytest.approx(255.0)
    assert neighbour_difference(np.full((4, 4, 3), 0.3, np.float32)) == 0.0


def test_white_noise_against_a_smooth_painting(rng):
    noise = rng.random((64, 64, 3), dtype=np.float32)
    # Uniform noise: E|a - b| = 1/3 of the range per axis, two axes.
    assert neighbour_difference(noise) == pytest.approx(2 * 255 / 3, rel=0.03)
    y, x = np.mgrid[0:64, 0:64] / 64.0
    smooth = np.stack([x, y, 0.5 * (x + y)], axis=-1).astype(np.float32)
    assert noise_ratio(noise, smooth) > 20
    assert noise_ratio(smooth, smooth) == pytest.approx(1.0, abs=0.05)
    # The reference is resized to the image's size first.
    big = np.repeat(np.repeat(smooth, 2, axis=0), 2, axis=1)
    assert noise_ratio(smooth, big) == pytest.approx(1.0, rel=0.2)


def test_the_painting_is_measured_as_the_run_resizes_it(rng):
    """The reference is the style image resized by jstyle's own resizing (images.resize_to),
    not by another filter: at 512 px the two differ by 40% on The Starry Night."""
    from jstyle.images import from_array, resize_to, to_array

    painting = rng.random((90, 120, 3), dtype=np.float32)
    image = rng.random((48, 64, 3), dtype=np.float32)
    seen = to_array(resize_to(from_array(painting), 48, 64))
    assert noise_ratio(image, painting) == pytest.approx(
        neighbour_difference(image) / neighbour_difference(seen), rel=1e-6)
