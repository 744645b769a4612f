"""jstyle's user cache folder: converted weights, JAX's persistent compilation cache,
jstyle's compiled programs and its built kernels."""

from __future__ import annotations

import os
from pathlib import Path

from jstyle.fileio import expand_user

#: Set to a folder to move the compilation cache, or to "off" to disable it.
COMPILATION_CACHE_ENV = "JSTYLE_COMPILATION_CACHE"
#: Inside the compilation cache's folder: whole compiled programs (:mod:`jstyle.programs`).
PROGRAMS_FOLDER = "jstyle-programs"
#: Set to "off" to keep the compilation cache but trace every program afresh (for code
#: that patches jstyle's functions at run time: a kept program would not see the patch).
PROGRAMS_ENV = "JSTYLE_PROGRAMS"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jstyle`` (``XDG_CACHE_HOME`` defaults to ``~/.cache``)."""
    root = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return expand_user(root) / "jstyle"


def kernels_dir() -> Path:
    """Where jstyle's C++ kernels are built (:mod:`jstyle.onednn`)."""
    return cache_dir() / "kernels"


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache (a second run of a config then skips
    XLA compilation) and :mod:`jstyle.programs` (it then skips tracing and lowering too).
    Folder: ``$JSTYLE_COMPILATION_CACHE``, else ``cache_dir()/xla``;
    ``JSTYLE_COMPILATION_CACHE=off`` disables both, ``JSTYLE_PROGRAMS=off`` the programs
    alone. Returns the folder, or None when off."""
    import jax

    setting = os.environ.get(COMPILATION_CACHE_ENV, "")
    if setting.lower() == "off":
        return None
    folder = expand_user(setting) if setting else cache_dir() / "xla"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    from jstyle import programs

    if os.environ.get(PROGRAMS_ENV, "").lower() != "off":
        programs.enable(folder / PROGRAMS_FOLDER)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
