"""What a set of VGG-19 weights expects of its input image, and the two conversions.

jstyle's images are float32 RGB arrays in [0, 1], channels last. Each weights
file records how its network wants them: the Caffe VGG-19 of the paper takes
BGR pixels in 0-255 minus the ImageNet mean; torchvision's takes RGB in 0-1,
minus a mean, divided by a standard deviation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Preprocessing", "CAFFE", "TORCHVISION", "to_network", "from_network", "to_8bit",
    "quantize", "delivered", "RESAMPLE_FILTER"]

#: The Pillow filter every image is resized with (``PIL.Image.Resampling[RESAMPLE_FILTER]``):
#: the content, style, mask and start images, and the painting a result is measured against.
RESAMPLE_FILTER = "LANCZOS"

#: The ImageNet mean in Caffe's BGR order and 0-255 range (Simonyan & Zisserman).
CAFFE_BGR_MEAN: tuple[float, float, float] = (103.939, 116.779, 123.68)
#: torchvision's ImageNet normalisation, RGB order, 0-1 range.
TORCHVISION_RGB_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
TORCHVISION_RGB_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Input convention of a network: ``(pixels * pixel_range, reordered) - mean) / std``.

    ``mean`` and ``std`` are given in the network's own ``channel_order``.
    """

    channel_order: str  # "BGR" or "RGB"
    pixel_range: float  # 255.0 for Caffe weights, 1.0 for torchvision's
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', not {self.channel_order!r}")


CAFFE = Preprocessing(channel_order="BGR", pixel_range=255.0, mean=CAFFE_BGR_MEAN)
TORCHVISION = Preprocessing(
    channel_order="RGB", pixel_range=1.0, mean=TORCHVISION_RGB_MEAN, std=TORCHVISION_RGB_STD
)


def to_network(image, prep: Preprocessing):
    """RGB image in [0, 1], shape (..., H, W, 3) -> the network's input space (a numpy
    array for a numpy image, a JAX array for a JAX array or tracer: nothing here imports
    JAX, so that reading a weights file, which records its convention, needs none)."""
    x = image * prep.pixel_range
    if prep.channel_order == "BGR":
        x = x[..., ::-1]
    return (x - np.asarray(prep.mean, x.dtype)) / np.asarray(prep.std, x.dtype)


def from_network(x, prep: Preprocessing):
    """Inverse of :func:`to_network` (no clipping): back to RGB in [0, 1]."""
    x = x * np.asarray(prep.std, x.dtype) + np.asarray(prep.mean, x.dtype)
    if prep.channel_order == "BGR":
        x = x[..., ::-1]
    return x / prep.pixel_range


def quantize(image, bits: int = 8) -> np.ndarray:
    """Float RGB in [0, 1] -> the pixels a file of ``bits`` (8 or 16) per channel stores:
    each value clipped to [0, 1], times 2**bits - 1, rounded half up (NaN becomes 0); uint8
    or uint16. The one quantisation jstyle uses, for the files it writes and for the loss
    of the image a user receives (:func:`delivered`)."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, not {bits!r}")
    top = float((1 << bits) - 1)
    values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
    return np.clip(values * np.float32(top) + np.float32(0.5), 0, top).astype(
        np.uint8 if bits == 8 else np.uint16)


def to_8bit(image) -> np.ndarray:
    """Float RGB in [0, 1] -> the 8-bit pixels a PNG stores (:func:`quantize` at 8 bits)."""
    return quantize(image, 8)


def delivered(image, bits: int = 8) -> np.ndarray:
    """The float image that a saved file of ``bits`` per channel holds (:func:`quantize`,
    divided by 2**bits - 1, as :func:`jstyle.images.to_array` reads it back)."""
    return quantize(image, bits).astype(np.float32) / np.float32((1 << bits) - 1)
