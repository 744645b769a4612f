"""The network's input convention, and the one 8-bit quantisation."""

import numpy as np
import pytest

from jstyle.preprocessing import CAFFE, TORCHVISION, from_network, to_network


@pytest.mark.parametrize("prep", [CAFFE, TORCHVISION])
def test_preprocessing_round_trip(prep, rng):
    image = rng.random((4, 5, 3), dtype=np.float32)
    np.testing.assert_allclose(from_network(to_network(image, prep), prep), image, atol=1e-5)


def test_caffe_preprocessing_is_bgr_minus_mean():
    red = np.zeros((1, 1, 3), np.float32)
    red[..., 0] = 1.0
    np.testing.assert_allclose(to_network(red, CAFFE)[0, 0], [-103.939, -116.779, 255 - 123.68],
                               rtol=1e-5)
