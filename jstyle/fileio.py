"""Atomic file writes: an interrupted write never leaves a half-written file in place."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on success rename it onto ``path``.

    The temporary file sits in the same folder (so ``os.replace`` is atomic) under a
    hidden name, and is created by the caller, so it gets the usual permissions.
    The folder is created. On any error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def expand_user(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; one that names no user (or no
    home folder is known) is kept as written -- a file may be called ``~draft.h5``."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)
