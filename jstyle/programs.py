"""Compiled programs kept on disk, so that a second run of a config skips tracing,
lowering and compiling altogether.

JAX's persistent compilation cache (:func:`jstyle.cache.enable_compilation_cache`) saves
only XLA's compilation: each process still traces the Python program (eq. 7's network,
its gradient, the optimiser's loop and line search) and lowers it to StableHLO before it
can look the executable up, and for a run that is most of its start-up. This module keeps
the executable itself (:mod:`jax.experimental.serialize_executable`) under a key of
everything the program depends on -- the function, its static arguments, the shapes,
dtypes and placement of its inputs, jstyle's own source, the JAX and jaxlib versions, the
XLA flags and the CPU -- so that a warm start loads it in milliseconds and calls it.

Only programs on one device of one process are kept (a sharded run traces as before).
A file that cannot be read back (another jaxlib, a truncated write) is removed and the
program compiled again; nothing here can change a result, only how soon it comes. A
program that is not kept yet is compiled afresh, outside JAX's caches (see
:func:`_outside_jax_cache`): that clears the process's in-memory JAX caches, so other
jitted functions of the process trace again on their next call (once per new program).

References:
  JAX, "Ahead-of-time lowering and compilation":
  https://docs.jax.dev/en/latest/aot.html
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["enable", "disable", "folder", "compiled", "key", "MAX_BYTES"]

#: Oldest programs are removed once the folder holds more than this.
MAX_BYTES = 2 << 30

_state: dict[str, Any] = {"folder": None}
#: Programs compiled or loaded in this process, by key.
_MEMO: dict[str, Any] = {}


def enable(path: Path) -> None:
    """Keep compiled programs in ``path`` (made when the first is stored)."""
    _state["folder"] = Path(path)


def disable() -> None:
    """Keep no programs on disk (the default until :func:`enable`)."""
    _state["folder"] = None


def folder() -> Path | None:
    """Where programs are kept, or None when they are not."""
    return _state["folder"]


@functools.cache
def _source_digest() -> str:
    """jstyle's own code: a program traced from other code is another program."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted([*root.rglob("*.py"), *root.rglob("*.cc")]):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _machine_digest() -> str:
    """What the executable was compiled for and with: versions, flags, devices, CPU."""
    from importlib import metadata

    import jax

    parts = [jax.__version__, metadata.version("jaxlib"), os.environ.get("XLA_FLAGS", ""),
             str(jax.config.jax_enable_x64), str(jax.config.jax_default_matmul_precision)]
    device = jax.local_devices()[0]
    parts += [device.platform, device.device_kind, device.client.platform_version]
    try:  # XLA:CPU compiles for the host's instruction set
        with open("/proc/cpuinfo") as f:
            parts += [line for line in f if line.startswith(("flags", "model name"))][:2]
    except OSError:
        import platform

        parts.append(platform.processor())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _leaf_signature(leaf: Any) -> str:
    import numpy as np

    sharding = getattr(leaf, "sharding", None)
    devices = sorted(d.id for d in sharding.device_set) if sharding is not None else None
    return (f"{np.shape(leaf)}:{getattr(leaf, 'dtype', type(leaf).__name__)}:"
            f"{getattr(leaf, 'weak_type', False)}:{sharding!r}:{devices}")


def _one_device(leaves: list) -> bool:
    devices = set()
    for leaf in leaves:
        sharding = getattr(leaf, "sharding", None)
        if sharding is not None:
            devices |= set(sharding.device_set)
    return len(devices) <= 1


def key(jitted: Callable, args: tuple, static: Mapping[str, Any]) -> str:
    """The key of ``jitted`` lowered for ``args`` with ``static`` keyword arguments."""
    import jax

    leaves, tree = jax.tree.flatten(args)
    digest = hashlib.sha256()
    for part in (getattr(jitted, "__module__", ""), getattr(jitted, "__qualname__", ""),
                 _source_digest(), _machine_digest(), str(tree),
                 *(_leaf_signature(v) for v in leaves),
                 *(f"{k}={v!r}" for k, v in sorted(static.items()))):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _scipy_capsules() -> list[str]:
    """SciPy's BLAS and LAPACK extension modules put in place without SciPy's packages;
    returns the names put in ``sys.modules``, for :func:`_prepare` to take out again.

    jaxlib's LAPACK kernels read their routines from ``scipy.linalg.cython_blas`` and
    ``cython_lapack``; importing those by name runs ``scipy.linalg``'s ``__init__`` first,
    most of it modules no run uses. The two extensions need nothing from it, so
    they are loaded from their files as they are; anything unexpected leaves the ordinary
    import to happen as before."""
    import importlib.machinery
    import importlib.util
    import sys

    placed: list[str] = []
    try:
        spec = importlib.util.find_spec("scipy")
    except (ImportError, ValueError):
        return placed
    if spec is None or not spec.submodule_search_locations:
        return placed
    for name in ("cython_blas", "cython_lapack"):
        full = f"scipy.linalg.{name}"
        if full in sys.modules:
            continue
        for folder in spec.submodule_search_locations:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = Path(folder, "linalg", name + suffix)
                if not path.is_file():
                    continue
                try:
                    found = importlib.util.spec_from_file_location(full, path)
                    module = importlib.util.module_from_spec(found)
                    found.loader.exec_module(module)
                except Exception:  # noqa: BLE001 - the ordinary import will do it
                    return placed
                sys.modules[full] = module
                placed.append(full)
                break
            if full in sys.modules:
                break
    return placed


@functools.cache
def _prepare() -> None:
    """What lowering would have done: jaxlib's LAPACK kernels (the solvers' small Cholesky
    and linear solves) take their routines from SciPy when a program using them is first
    lowered; an executable loaded without lowering would call null pointers. The
    routines are read once; the two modules placed for it are then taken out of
    ``sys.modules``, so that a later ``import scipy.linalg`` is the ordinary one."""
    import sys

    placed = _scipy_capsules()
    try:
        from jax._src.lax.linalg import initialize_lapack
    except ImportError:  # another jax: lowering a one-element Cholesky does the same
        import jax
        import numpy as np

        jax.jit(jax.numpy.linalg.cholesky).lower(np.ones((1, 1), np.float32))
    else:
        initialize_lapack()
    finally:
        for name in placed:
            sys.modules.pop(name, None)


def _load(path: Path):
    from jax.experimental import serialize_executable

    _prepare()
    with open(path, "rb") as f:
        serialized, in_tree, out_tree = pickle.load(f)
    program = serialize_executable.deserialize_and_load(serialized, in_tree, out_tree)
    os.utime(path)  # recently used: the last to be evicted
    return program


def _store(path: Path, program) -> None:
    from jax.experimental import serialize_executable

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        payload = pickle.dumps(serialize_executable.serialize(program))
    except (ValueError, NotImplementedError, TypeError, pickle.PicklingError):
        # This executable cannot be kept: say so, so that the next run compiles it through
        # JAX's persistent cache instead of afresh outside it.
        path.with_suffix(".unkept").touch()
        return
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(payload)
    os.replace(f.name, path)  # atomic: a concurrent run finds a whole file or none
    _evict(path.parent)


def _evict(where: Path) -> None:
    files = sorted(where.glob("*.program"), key=lambda p: p.stat().st_mtime, reverse=True)
    total = 0
    for path in files:
        total += path.stat().st_size
        if total > MAX_BYTES and path != files[0]:  # the newest always stays
            path.unlink(missing_ok=True)


def compiled(jitted: Callable, *args: Any, **static: Any):
    """``jitted`` (a ``jax.jit`` function) compiled for ``args`` (called positionally)
    with its static keyword arguments ``static``: from this process's memory, else from
    the folder, else lowered and compiled (and stored). Call it with ``args`` alone."""
    import jax

    leaves = jax.tree.leaves(args)
    where = folder()
    if where is None or jax.process_count() > 1 or not _one_device(leaves):
        name = None
    else:
        name = key(jitted, args, static)
        program = _MEMO.get(name)
        if program is not None:
            return program
        path = where / f"{name}.program"
        if path.is_file():
            try:
                program = _load(path)
            except Exception:  # another jaxlib's, truncated, unreadable: compile it again
                path.unlink(missing_ok=True)
            else:
                return _remember(name, program)
    if name is None or (where / f"{name}.unkept").is_file():
        return jitted.lower(*args, **static).compile()
    with _outside_jax_cache() as bypassed:
        program = jitted.lower(*args, **static).compile()
    _remember(name, program)
    if bypassed:
        # a read-only or full disk costs the next run its compilation, nothing else
        with contextlib.suppress(OSError):
            _store(where / f"{name}.program", program)
    return program


def _remember(name: str, program):
    """``program`` kept in this process's memory under ``name`` (16 at most, the oldest
    going first); returns it."""
    if len(_MEMO) >= 16:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[name] = program
    return program


@contextlib.contextmanager
def _outside_jax_cache():
    """Compile without JAX's persistent cache (neither read nor written): an executable
    read back from that cache and serialised again lacks its kernels on XLA:CPU (jaxlib
    0.10: "Function ... not found" when it runs), so only one compiled here is kept.
    JAX decides once per process whether its cache is used, so the switch is that
    decision's own state, and this process's in-memory caches are cleared, so that the
    compilation is a real one. Yields False
    (keep nothing) where this JAX has neither."""
    try:
        import jax
        from jax._src import compilation_cache as cc

        lock = cc._cache_initialized_mutex
        with lock:
            saved = cc._cache_checked, cc._cache_used
            cc._cache_checked, cc._cache_used = True, False
        # nor this process's own copy of an executable it read from that cache: its
        # traces, lowerings and compilations go (on a miss only; they are redone from
        # JAX's cache when next needed)
        jax.clear_caches()
    except (ImportError, AttributeError):
        yield False
        return
    try:
        yield True
    finally:
        with lock:
            cc._cache_checked, cc._cache_used = saved
