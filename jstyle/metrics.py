"""Measures of a delivered image that are not the objective: how much pixel-level noise it has.

The objective (eq. 7) barely sees some pixel patterns -- the network's first layers average
them away -- so a start of white noise can survive in the result where nothing pulls it out.
:func:`neighbour_difference` measures that: the mean absolute difference between
neighbouring pixels of the 8-bit image, along both axes. A photo scores about 15-20, a
painting some tens, white noise 170. Divided by the style image's own score at the same
size (:func:`noise_ratio`) it says whether the result is busier than the painting it
imitates: above 1, it is.
"""

from __future__ import annotations

import numpy as np

from jstyle.preprocessing import RESAMPLE_FILTER, to_8bit

__all__ = ["neighbour_difference", "noise_ratio"]


def neighbour_difference(image: np.ndarray) -> float:
    """Mean of |I(y+1, x) - I(y, x)| + |I(y, x+1) - I(y, x)| over pixels and channels, in
    0-255 units, of ``image`` (float RGB in [0, 1], ``(H, W, 3)``) as saved in 8 bits."""
    pixels = to_8bit(image).astype(np.float64)
    dy = np.abs(np.diff(pixels, axis=0)).mean() if pixels.shape[0] > 1 else 0.0
    dx = np.abs(np.diff(pixels, axis=1)).mean() if pixels.shape[1] > 1 else 0.0
    return float(dy + dx)


def noise_ratio(image: np.ndarray, style: np.ndarray) -> float:
    """:func:`neighbour_difference` of ``image`` over that of ``style`` resized to its size
    with the filter jstyle resizes its inputs with (so the painting is measured as the run
    saw it)."""
    from PIL import Image

    height, width = np.shape(image)[:2]
    resized = Image.fromarray(to_8bit(style)).resize((width, height),
                                                     Image.Resampling[RESAMPLE_FILTER])
    reference = neighbour_difference(np.asarray(resized, np.float32) / 255.0)
    return neighbour_difference(image) / max(reference, 1e-12)
