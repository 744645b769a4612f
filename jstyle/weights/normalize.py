"""The paper's normalised VGG-19: every filter's mean rectified response is 1.

Gatys et al. (2016, sec. 2): "We normalized the network by scaling the weights such
that the mean activation of each convolutional filter over images and positions is
equal to one. Such re-scaling can be done for the VGG network without changing its
output, because it contains only rectifying linear activation functions and no
normalization or pooling over feature maps."

The rescaling, in network order: take the mean m_l of each filter's rectified response
``reluB_I`` over the calibration images and all positions; divide that filter's kernel
and bias by it; multiply the next convolution's incoming weights (the input-channel axis
of its HWIO kernel) by it. Since ReLU and both poolings commute with a positive
per-channel scale (relu(x / m) = relu(x) / m), the normalised network's response at
every ``reluB_I`` is the original's divided by m, its mean is 1, and nothing the
original computes is lost: the scale is undone at the next convolution.

Measuring layer by layer after the layers before it have been rescaled gives exactly
the means of the original network, because each layer's rescaling is undone by the
next convolution's incoming weights: the partly rescaled network's response at the
layer being measured *is* the original's. So one forward pass of the original network
over the calibration set measures every layer (:func:`mean_activations`), and
:func:`rescale_params` applies them in network order.

A *dead* filter (mean 0: no positive response at any position of any calibration
image) keeps factor 1: it is left as it was, rather than divided by 0. Its response is
then 0 on the calibration set, not 1, and elsewhere still the original's. A filter that
barely fires (a mean many orders of magnitude below its layer's) is divided by its mean
like any other; its few positive responses are small differences of much larger terms,
which float32 knows only to rounding, so its normalised mean is 1 only to that precision
(a fraction of a percent), and it is amplified wherever it does fire: calibrate on
varied images. The real VGG-19 has no such filter on the default set (every mean is
above 0.5% of its layer's median).

The means depend on the pooling the network runs with while measuring (the layers
after the first pooling see its output): jstyle calibrates with average pooling,
:data:`CALIBRATION_POOLING`, the paper's choice for synthesis. With max pooling the
normalised network is still the original up to the same per-filter factors; only
its means are then not exactly 1.

The default calibration set (:func:`default_calibration_images`) works offline: the
photographs and textures bundled in the scikit-image wheel (:data:`SKIMAGE_CALIBRATION`)
and jstyle's generated ``swirl_painting``, each scaled so its shorter side is
:data:`CALIBRATION_SIZE` pixels and centre-cropped to a square.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageOps

from jstyle.default_images import DEFAULT_STYLE_NAME, swirl_painting
from jstyle.errors import JStyleError
from jstyle.fileio import expand_user
from jstyle.images import IMAGE_SUFFIXES, RESAMPLE, read_image, to_array, to_rgb
from jstyle.layers import CONV_LAYERS, relu_of
from jstyle.preprocessing import Preprocessing, to_network
from jstyle.vgg import POOLING, extract_features
from jstyle.weights.store import Params

#: The rectified responses whose filters are normalised, in network order.
RELU_LAYERS: tuple[str, ...] = tuple(relu_of(conv) for conv in CONV_LAYERS)
#: The pooling the network runs with while measuring: the paper's, for synthesis.
CALIBRATION_POOLING = "avg"
#: Side of the square calibration images, in pixels (VGG-19's training crop size).
CALIBRATION_SIZE = 224
#: The ``skimage.data`` images of the default calibration set: photographs (people,
#: animals, objects, landscape, sky, microscopy) and textures, all inside the wheel.
SKIMAGE_CALIBRATION: tuple[str, ...] = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "camera", "moon", "coins", "brick", "grass", "gravel",
)  # fmt: skip

Factors = dict[str, np.ndarray]


def square(image: Image.Image, size: int) -> np.ndarray:
    """An RGB image scaled so that its shorter side is ``size``, centre-cropped to
    ``size`` x ``size``: float32 ``(size, size, 3)`` in [0, 1]."""
    return to_array(ImageOps.fit(to_rgb(image), (size, size), RESAMPLE))


def default_calibration_summary(size: int | None = None) -> str:
    """The default calibration set in words, as recorded in a normalised weights file
    (``size`` defaults to :data:`CALIBRATION_SIZE`)."""
    size = CALIBRATION_SIZE if size is None else size
    return (
        f"{len(SKIMAGE_CALIBRATION) + 1} images at {size} px ({CALIBRATION_POOLING} pooling): "
        f"scikit-image's {', '.join(SKIMAGE_CALIBRATION)} and jstyle's {DEFAULT_STYLE_NAME}"
    )


def default_calibration_images(size: int = CALIBRATION_SIZE) -> np.ndarray:
    """The default calibration set: ``(N, size, size, 3)`` float32 RGB in [0, 1].

    :data:`SKIMAGE_CALIBRATION` (grayscale ones repeated over the three channels) and
    :func:`jstyle.default_images.swirl_painting` drawn at ``size``; no network needed.
    """
    from skimage import data

    images = [square(Image.fromarray(getattr(data, name)()), size)
              for name in SKIMAGE_CALIBRATION]
    images.append(swirl_painting(size, size))
    return np.stack(images)


def calibration_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files (by suffix, :data:`IMAGE_SUFFIXES`) directly in ``folder``, sorted;
    hidden files are skipped. One-line :class:`JStyleError` if there are none."""
    folder = expand_user(folder)
    if not folder.exists():
        raise JStyleError(f"calibration folder {folder} does not exist; give a folder of images")
    if not folder.is_dir():
        raise JStyleError(f"calibration folder {folder} is not a folder; give a folder of images")
    files = sorted(
        path for path in folder.iterdir()
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
        and path.is_file()
    )  # fmt: skip
    if not files:
        raise JStyleError(
            f"calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
            f"put a few photographs in it"
        )
    return files


def load_calibration_folder(
    folder: str | os.PathLike[str], size: int = CALIBRATION_SIZE
) -> np.ndarray:
    """The images of a folder (:func:`calibration_files`), each made :func:`square`:
    ``(N, size, size, 3)`` float32. An unreadable image is a one-line :class:`JStyleError`."""
    return np.stack([square(read_image(path), size) for path in calibration_files(folder)])


def calibration_set(
    calibration: str | os.PathLike[str] | None, size: int | None = None
) -> tuple[np.ndarray, str]:
    """The calibration images and their description: the default set for ``None``, else
    the images of the folder ``calibration``; ``size`` defaults to :data:`CALIBRATION_SIZE`."""
    size = CALIBRATION_SIZE if size is None else size
    if calibration is None:
        return default_calibration_images(size), default_calibration_summary(size)
    images = load_calibration_folder(calibration, size)
    folder = expand_user(calibration).resolve()
    return images, f"{len(images)} images at {size} px from the folder {folder}"


def images_sha256(images: np.ndarray) -> str:
    """Hex SHA-256 of the calibration pixels (float32, little-endian, C order)."""
    return hashlib.sha256(np.ascontiguousarray(images, dtype="<f4").tobytes()).hexdigest()


def _check_images(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    batch = [np.asarray(image, dtype=np.float32) for image in images]
    if not batch:
        raise JStyleError("normalisation needs at least one calibration image")
    for image in batch:
        if image.ndim != 3 or image.shape[-1] != 3:
            raise JStyleError(
                f"calibration images must be RGB arrays (H, W, 3), not shape {image.shape}"
            )
    return batch


@functools.partial(jax.jit, static_argnames=("preprocessing", "pooling"))
def _image_means(
    params: Params, image: jax.Array, preprocessing: Preprocessing, pooling: str
) -> dict[str, jax.Array]:
    """Each filter's mean rectified response over the positions of one image (H, W, 3)."""
    features = extract_features(params, to_network(image[None], preprocessing), RELU_LAYERS,
                                pooling)
    return {name: jnp.mean(value, axis=(0, 1, 2)) for name, value in features.items()}


def mean_activations(
    params: Mapping[str, Mapping[str, np.ndarray]],
    images: np.ndarray | Sequence[np.ndarray],
    preprocessing: Preprocessing,
    pooling: str = CALIBRATION_POOLING,
) -> dict[str, np.ndarray]:
    """Each filter's mean rectified response over ``images`` and all positions.

    ``images``: RGB in [0, 1], ``(N, H, W, 3)`` or a sequence of ``(H, W, 3)`` (each
    image weighs the same). Returns ``{"relu1_1": (64,), ..., "relu5_4": (512,)}`` float64.
    One image at a time, so memory stays that of one forward pass.
    """
    if pooling not in POOLING:
        raise JStyleError(f"pooling must be one of {', '.join(POOLING)}, not {pooling!r}")
    batch = _check_images(images)
    device_params = jax.tree_util.tree_map(jnp.asarray, dict(params))
    per_image = [jax.device_get(_image_means(device_params, jnp.asarray(image), preprocessing,
                                             pooling)) for image in batch]
    return {name: np.mean([np.asarray(m[name], np.float64) for m in per_image], axis=0)
            for name in RELU_LAYERS}


def factors_from_means(means: Mapping[str, np.ndarray]) -> Factors:
    """Per-filter factors from mean responses: the mean itself, or 1 for a dead filter
    (mean 0). float32, so that the factors recorded are the ones applied."""
    factors: Factors = {}
    for name in RELU_LAYERS:
        mean = np.asarray(means[name], np.float64)
        if not np.all(np.isfinite(mean)) or np.any(mean < 0):
            raise JStyleError(f"mean responses of {name} are not finite and non-negative")
        factors[name] = np.where(mean > 0, mean, 1.0).astype(np.float32)
    return factors


def rescale_params(params: Mapping[str, Mapping[str, np.ndarray]], factors: Factors) -> Params:
    """Divide each filter's kernel and bias by its factor and multiply the next
    convolution's incoming weights by it, in network order (float64 arithmetic, float32
    result). The network's response at every ``reluB_I`` becomes the original's divided by
    ``factors["reluB_I"]``."""
    rescaled: Params = {}
    incoming = None  # the previous layer's factors, per input channel of this convolution
    for conv, relu in zip(CONV_LAYERS, RELU_LAYERS, strict=True):
        kernel = np.asarray(params[conv]["kernel"], np.float64)
        bias = np.asarray(params[conv]["bias"], np.float64)
        factor = np.asarray(factors[relu], np.float64)
        if incoming is not None:
            kernel = kernel * incoming[:, None]
        rescaled[conv] = {
            "kernel": (kernel / factor).astype(np.float32),
            "bias": (bias / factor).astype(np.float32),
        }
        incoming = factor
    return rescaled


def normalize_params(
    params: Mapping[str, Mapping[str, np.ndarray]],
    images: np.ndarray | Sequence[np.ndarray],
    preprocessing: Preprocessing,
    pooling: str = CALIBRATION_POOLING,
) -> tuple[Params, Factors]:
    """The paper's normalised network (sec. 2) and the per-filter factors divided out.

    Every filter's mean rectified response over ``images`` and positions becomes 1
    (dead filters, mean 0, keep factor 1); the response at every ``reluB_I`` is the
    original's divided by ``factors["reluB_I"]``, with either pooling.
    """
    factors = factors_from_means(mean_activations(params, images, preprocessing, pooling))
    return rescale_params(params, factors), factors
