"""XLA:CPU settings for a process that runs jstyle, chosen by measurement.

XLA reads its flags (``XLA_FLAGS``) once, when JAX first starts its backend, so they are
process settings: the command line, the benchmark workers and :mod:`jstyle.pipeline` set
them before that (:func:`apply`), and never after; a program that imports jstyle keeps
its own until it calls :func:`apply` first.

The one setting: ``--xla_cpu_experimental_ynn_fusion_type=`` (no YNNPACK fusions), so
XLA:CPU runs the convolutions, their input gradients and the Gram products through its
own library kernels instead of YNNPACK's. On the 2-core AMD EPYC (AVX2) that made one
loss-and-gradient evaluation inside the optimiser's loop about 15% faster at 128 px and
7% at 512 px (README, "Performance"); the loss agrees to float32 rounding. It is applied
only with the jaxlib versions it was measured on (:data:`MEASURED_JAXLIB`), whose XLA
knows the flag (an unknown flag in ``XLA_FLAGS`` aborts the process), and never when
``XLA_FLAGS`` already names it: set it yourself to choose otherwise, e.g.
``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT``.

And one setting of the C library's allocator (:func:`keep_freed_memory`, glibc only): XLA
allocates a program's working buffers at every call (each chunk of optimiser steps, each
evaluation a benchmark times) and frees them after; glibc hands the large ones back to the
system and the next call faults them in again, page by page. Keeping them (freed memory up
to 1 GiB stays with the process, blocks up to 32 MiB come from the heap) saves that
faulting (measured in the README's Performance: mostly a lone evaluation's gain, since a
run calls its program once a chunk); the process's peak memory is the same, it is only
not given back between calls. Skipped
where the environment sets the allocator itself (any ``MALLOC_*_`` variable).
"""

from __future__ import annotations

import os
import sys

__all__ = ["FLAGS", "MEASURED_JAXLIB", "ALLOCATOR", "flags_for", "apply", "keep_freed_memory"]

#: The flags jstyle adds, by name and value.
FLAGS = {"xla_cpu_experimental_ynn_fusion_type": ""}
#: jaxlib releases (major, minor) whose XLA:CPU these flags were measured on.
MEASURED_JAXLIB = ((0, 10),)


#: glibc ``mallopt`` settings (parameter number, value): M_TRIM_THRESHOLD 1 GiB, M_TOP_PAD
#: 64 MiB, M_MMAP_THRESHOLD 32 MiB (glibc's largest on 64-bit).
ALLOCATOR = ((-1, 1 << 30), (-2, 64 << 20), (-3, 32 << 20))


def keep_freed_memory() -> bool:
    """Keep freed memory with the process (glibc's allocator, see the module docstring).
    Returns whether the settings were made (not on another C library, nor where a
    ``MALLOC_*_`` variable is set)."""
    import ctypes
    import platform

    if any(k.startswith("MALLOC_") for k in os.environ) or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in ALLOCATOR)


def _release(version: str) -> tuple[int, int] | None:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def flags_for(existing: str, jaxlib_version: str) -> str:
    """``XLA_FLAGS`` with jstyle's flags added: ``existing`` itself for an unmeasured
    jaxlib, and without any flag it already names (the user's setting wins)."""
    if _release(jaxlib_version) not in MEASURED_JAXLIB:
        return existing
    named = {word.lstrip("-").split("=", 1)[0] for word in existing.split()}
    added = [f"--{name}={value}" for name, value in FLAGS.items() if name not in named]
    return " ".join([existing.strip(), *added]).strip()


def _backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # another JAX: assume the worst
        return True


def apply() -> bool:
    """Add jstyle's flags to this process's ``XLA_FLAGS`` if JAX has not started its
    backend yet (afterwards XLA would not read them), and keep freed memory
    (:func:`keep_freed_memory`, at any time). Returns whether XLA_FLAGS changed."""
    keep_freed_memory()
    if _backend_started():
        return False
    from importlib import metadata

    try:
        version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return False
    existing = os.environ.get("XLA_FLAGS", "")
    wanted = flags_for(existing, version)
    if wanted == existing:
        return False
    os.environ["XLA_FLAGS"] = wanted
    return True
