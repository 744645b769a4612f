"""jstyle's user cache folder: converted weights and JAX's persistent compilation cache."""

from __future__ import annotations

import os
from pathlib import Path

from jstyle.fileio import expand_user

#: Set to a folder to move the compilation cache, or to "off" to disable it.
COMPILATION_CACHE_ENV = "JSTYLE_COMPILATION_CACHE"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jstyle`` (``XDG_CACHE_HOME`` defaults to ``~/.cache``)."""
    root = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return expand_user(root) / "jstyle"


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache (a second run of a config then skips
    XLA compilation). Folder: ``$JSTYLE_COMPILATION_CACHE``, else ``cache_dir()/xla``;
    ``JSTYLE_COMPILATION_CACHE=off`` disables it. Returns the folder, or None when off."""
    import jax

    setting = os.environ.get(COMPILATION_CACHE_ENV, "")
    if setting.lower() == "off":
        return None
    folder = expand_user(setting) if setting else cache_dir() / "xla"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
