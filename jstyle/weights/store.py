"""jstyle's own VGG-19 weights file (HDF5): its format and where it lives (getting it there:
:mod:`jstyle.weights.provision`).

Root attributes: ``format="jstyle-vgg19"``, ``format_version=1``, the input
convention (``channel_order``, ``pixel_range``, ``mean``, ``std``) and the
provenance (``source``, ``source_file``, ``source_sha256``, ``license``,
``converter_version``, ``created``). One group per convolution, ``conv1_1`` ...
``conv5_4``, holds ``kernel`` (3, 3, in, out) float32 in HWIO order and ``bias``
(out,) float32.

Variants (:data:`VARIANTS`): ``variant="vgg19"`` (the attribute is absent in files
written before variants existed) is the network as trained; ``"vgg19-normalized"`` is
the paper's rescaled copy (Gatys et al. 2016, sec. 2; :mod:`jstyle.weights.normalize`),
which also records how it was made: root attributes ``calibration`` (what the
calibration images were), ``calibration_sha256`` (of their pixels),
``calibration_images``, ``calibration_size``, ``calibration_pooling`` and
``base_params_sha256`` (the weights it was made from), and a group
``normalization_factors`` with one dataset per rectified response, ``relu1_1`` ...
``relu5_4``: the (out,) float32 per-filter means that were divided out.

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
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from jstyle.cache import cache_dir
from jstyle.errors import JStyleError
from jstyle.fileio import atomic_path, expand_user
from jstyle.layers import CONV_CHANNELS, CONV_LAYERS, relu_of
from jstyle.options import (  # noqa: F401 - check_weights_value, VARIANTS: re-exported
    BASE_VARIANT,
    NORMALIZED_VARIANT,
    VARIANT_FILES,
    VARIANTS,
    check_weights_value,
    unknown_variant,
)
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

#: The HDF5 group holding a normalised file's per-filter factors.
FACTORS_GROUP = "normalization_factors"


@dataclasses.dataclass(frozen=True)
class Normalization:
    """How a normalised network was made (Gatys et al. 2016, sec. 2).

    Its response at every ``reluB_I`` is the base network's divided by ``factors[reluB_I]``,
    each filter's mean rectified response over the calibration images and positions
    (1 for a filter that never responds there).
    """

    factors: dict[str, np.ndarray]  # {"relu1_1": (64,) float32, ..., "relu5_4": (512,)}
    calibration: str  # what the calibration images were
    calibration_sha256: str  # of their pixels, as measured (float32, C order)
    images: int  # how many
    size: int  # their side in pixels (square)
    pooling: str  # the pooling the network ran with while measuring
    base_params_sha256: str  # params_sha256 of the weights it was made from


@dataclasses.dataclass(frozen=True)
class VGGWeights:
    """A loaded weights file: the Flax params pytree and what the network expects as input."""

    params: Params  # {"conv1_1": {"kernel": (3, 3, in, out), "bias": (out,)}, ...}
    preprocessing: Preprocessing
    sha256: str  # of the HDF5 file itself (changes with every conversion)
    source: str
    path: Path
    params_sha256: str  # of the parameters (see params_sha256()): identifies the weights
    variant: str = BASE_VARIANT  # one of VARIANTS
    normalization: Normalization | None = None  # how it was made, for the normalised variant


def create_command(path: str | os.PathLike[str], variant: str | None = None) -> str:
    """The command that (re)creates the weights file of ``variant`` at ``path``.

    With ``variant=None`` it is the one the file records, if it can be read, else told by
    the file name (the normalised variant's, or not).
    """
    if variant is None:
        variant = file_attr(path, "variant") if Path(path).is_file() else None
    if variant is None:
        named = Path(path).name == VARIANT_FILES[NORMALIZED_VARIANT]
        variant = NORMALIZED_VARIANT if named else BASE_VARIANT
    option = " --normalize" if variant == NORMALIZED_VARIANT else ""
    return f"python scripts/convert_vgg_weights.py{option} --output {path}"


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


def check_factors(factors: Mapping[str, np.ndarray], *, where: str) -> None:
    """Raise :class:`JStyleError` unless ``factors`` has a finite, positive (out,) vector
    for the rectified response of every convolution."""
    for conv, (_, cout) in CONV_CHANNELS.items():
        relu = relu_of(conv)
        if relu not in factors:
            raise JStyleError(f"{where}: normalisation factors for {relu} are missing")
        values = np.asarray(factors[relu])
        if values.shape != (cout,):
            raise JStyleError(
                f"{where}: normalisation factors for {relu} have shape {values.shape}, "
                f"expected {(cout,)}"
            )
        if not np.all(np.isfinite(values) & (values > 0)):
            raise JStyleError(f"{where}: normalisation factors for {relu} are not all positive")


def save_weights(
    path: str | os.PathLike[str],
    params: Mapping[str, Mapping[str, np.ndarray]],
    preprocessing: Preprocessing,
    provenance: Mapping[str, str],
    *,
    normalization: Normalization | None = None,
) -> None:
    """Write a weights file atomically (temp file in the same folder, then ``os.replace``).

    ``provenance`` must name every key of :data:`PROVENANCE_KEYS`; extra string
    entries are recorded as further root attributes. The folder is created. With
    ``normalization`` the file is the normalised variant and records how it was made.
    """
    path = Path(path)
    check_params(params, where=f"weights for {path}")
    missing = [key for key in PROVENANCE_KEYS if key not in provenance]
    if missing:
        raise ValueError(f"provenance lacks {', '.join(missing)}")
    if normalization is not None:
        check_factors(normalization.factors, where=f"weights for {path}")
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
        f.attrs["variant"] = BASE_VARIANT if normalization is None else NORMALIZED_VARIANT
        for layer in CONV_CHANNELS:
            group = f.create_group(layer)
            for name in ("kernel", "bias"):
                data = np.asarray(params[layer][name], dtype=np.float32)
                group.create_dataset(name, data=data)
        if normalization is not None:
            _write_normalization(f, normalization)


def _write_normalization(f: h5py.File, normalization: Normalization) -> None:
    f.attrs["calibration"] = normalization.calibration
    f.attrs["calibration_sha256"] = normalization.calibration_sha256
    f.attrs["calibration_images"] = int(normalization.images)
    f.attrs["calibration_size"] = int(normalization.size)
    f.attrs["calibration_pooling"] = normalization.pooling
    f.attrs["base_params_sha256"] = normalization.base_params_sha256
    group = f.create_group(FACTORS_GROUP)
    for conv in CONV_LAYERS:
        relu = relu_of(conv)
        group.create_dataset(relu, data=np.asarray(normalization.factors[relu], np.float32))


def _read_normalization(f: h5py.File) -> Normalization:
    """The normalisation record of an open file (KeyError if a part is missing)."""
    group = f[FACTORS_GROUP]
    factors = {relu_of(conv): np.asarray(group[relu_of(conv)][()], np.float32)
               for conv in CONV_LAYERS}
    return Normalization(
        factors=factors,
        calibration=_attr_str(f, "calibration"),
        calibration_sha256=_attr_str(f, "calibration_sha256"),
        images=int(f.attrs["calibration_images"]),
        size=int(f.attrs["calibration_size"]),
        pooling=_attr_str(f, "calibration_pooling"),
        base_params_sha256=_attr_str(f, "base_params_sha256"),
    )


def _attr_str(f: h5py.File, name: str) -> str:
    value = f.attrs[name]
    return value.decode() if isinstance(value, bytes) else str(value)


#: In the cache folder: the digests of weights files already verified, each with the
#: file's size, times and inode when it was; a file unchanged since is not hashed again.
DIGESTS_FILE = "weights-digests.json"
#: Files it remembers (the most recently verified).
DIGESTS_KEPT = 16


def _signature(path: Path) -> list[int]:
    """What changes when a file's bytes may have: its size, modification and change times
    (nanoseconds) and inode."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read_digests() -> dict:
    import json

    try:
        found = json.loads((cache_dir() / DIGESTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def remembered_digests(path: Path, signature: list[int]) -> tuple[str, str] | None:
    """``(file_sha256, params_sha256)`` of ``path`` as :func:`load_weights` verified them,
    None unless the file is unchanged since: its :func:`_signature` was ``signature``."""
    entry = _read_digests().get(str(path.resolve()))
    try:
        if entry["signature"] == signature:
            return str(entry["sha256"]), str(entry["params_sha256"])
    except (OSError, KeyError, TypeError):
        pass
    return None


def _remember_digests(path: Path, signature: list[int], sha256: str, params: str) -> None:
    """Note a verified file's digests in the cache folder (best effort: a folder that
    cannot be written means hashing again next time)."""
    import json

    known = _read_digests()
    key = str(path.resolve())
    known.pop(key, None)
    known[key] = {"signature": signature, "sha256": sha256, "params_sha256": params}
    kept = dict(list(known.items())[-DIGESTS_KEPT:])
    try:
        with atomic_path(cache_dir() / DIGESTS_FILE) as tmp:
            tmp.write_text(json.dumps(kept))
    except OSError:
        pass


def load_weights(path: str | os.PathLike[str]) -> VGGWeights:
    """Read and validate a weights file written by :func:`save_weights`.

    Its parameters are checked against their recorded digest, and the file's SHA-256 taken,
    once per change of the file: the digests of a file verified before and unchanged since
    (size, times, inode) come from the cache folder (:data:`DIGESTS_FILE`), not from
    hashing the whole file again at every start."""
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

    signature = _signature(path)
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
            variant = _attr_str(f, "variant") if "variant" in f.attrs else BASE_VARIANT
            if variant not in VARIANTS:
                raise invalid(f"variant {variant!r}, this jstyle reads {', '.join(VARIANTS)}")
            normalization = _read_normalization(f) if variant == NORMALIZED_VARIANT else None
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
        if normalization is not None:
            check_factors(normalization.factors, where=str(path))
    except JStyleError as exc:
        raise invalid(str(exc).removeprefix(f"{path}: ")) from None
    known = remembered_digests(path, signature)
    if known is not None:
        sha256, digest = known
    else:
        digest = params_sha256(params)
        if recorded is not None and recorded != digest:
            raise JStyleError(
                f"{path}: its parameters do not match their recorded checksum (corrupt "
                f"file?); re-create it with: {create_command(path)}"
            )
        sha256 = file_sha256(path)
        if _signature(path) == signature:  # not written to since it was opened
            _remember_digests(path, signature, sha256, digest)
    return VGGWeights(
        params=params, preprocessing=prep, sha256=sha256, source=source, path=path,
        params_sha256=digest, variant=variant, normalization=normalization,
    )


def default_weights_path() -> Path:
    """``$JSTYLE_WEIGHTS`` if set, else ``$XDG_CACHE_HOME/jstyle/vgg19-imagenet.h5``.

    ``XDG_CACHE_HOME`` defaults to ``~/.cache``. This is the base variant's file.
    """
    explicit = os.environ.get("JSTYLE_WEIGHTS")
    if explicit:
        return expand_user(explicit)
    return cache_dir() / VARIANT_FILES[BASE_VARIANT]


def variant_path(variant: str = BASE_VARIANT) -> Path:
    """Where the weights of ``variant`` live: the base variant's file is
    :func:`default_weights_path`; each other variant's sits beside it, under its name in
    :data:`VARIANT_FILES` (``vgg19-normalized.h5``)."""
    if variant not in VARIANTS:
        raise unknown_variant(variant)
    base = default_weights_path()
    return base if variant == BASE_VARIANT else base.with_name(VARIANT_FILES[variant])


def named_path(value: str | os.PathLike[str] | None) -> Path:
    """The file a config's ``weights`` value names, made yet or not (nothing is
    provisioned): ``None`` is the base variant's, a name of :data:`VARIANTS` that variant's
    (:func:`variant_path`; a variant name wins over a file of that name), anything else
    the path itself. :func:`jstyle.weights.resolve_weights` provisions what it names."""
    text = BASE_VARIANT if value is None else os.fspath(value)
    return variant_path(text) if text in VARIANTS else expand_user(text)


def file_attr(path: str | os.PathLike[str], name: str) -> str | None:
    """A root attribute of an HDF5 file as a string; None if the file or attribute is not
    readable (a cheap look, without loading or checking the parameters)."""
    try:
        with h5py.File(path, "r") as f:
            return _attr_str(f, name) if name in f.attrs else None
    except (OSError, ValueError, TypeError):
        return None
