"""jstyle.xla_cpu: which XLA flags a jstyle process adds, and when it leaves them alone."""

import os
import subprocess
import sys

from jstyle import xla_cpu
from jstyle.xla_cpu import FLAGS, flags_for

NAME = next(iter(FLAGS))


def test_the_flags_are_added_for_a_measured_jaxlib_and_kept_beside_the_users():
    assert flags_for("", "0.10.2") == f"--{NAME}="
    users = "--xla_force_host_platform_device_count=4"
    assert flags_for(users, "0.10.7").split() == [users, f"--{NAME}="]


def test_a_flag_the_user_set_wins_and_an_unmeasured_jaxlib_gets_none():
    mine = f"--{NAME}=LIBRARY_FUSION_TYPE_DOT"
    assert flags_for(mine, "0.10.2") == mine
    assert flags_for(f"{NAME}=x --a=1", "0.10.2") == f"{NAME}=x --a=1"
    assert flags_for("--a=1", "0.11.0") == "--a=1"  # its XLA may not know the flag
    assert flags_for("", "not a version") == ""


def test_apply_sets_xla_flags_only_before_jax_starts(monkeypatch):
    import jax

    jax.devices()  # this process's backend is up: XLA would not read new flags
    monkeypatch.setenv("XLA_FLAGS", "--a=1")
    assert xla_cpu.apply() is False and os.environ["XLA_FLAGS"] == "--a=1"
    # A fresh process: set before JAX starts, and XLA takes it (it aborts on flags it
    # does not know, so a run that computes proves the flag is one it knows).
    code = ("from jstyle import xla_cpu; changed = xla_cpu.apply(); import os, jax; "
            "import jax.numpy as jnp; jnp.ones(3).sum().block_until_ready(); "
            "print(changed, os.environ['XLA_FLAGS'])")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    from importlib import metadata

    measured = flags_for("", metadata.version("jaxlib")) != ""
    assert out == (["True", f"--{NAME}="] if measured else ["False"])


def test_freed_memory_is_kept_on_glibc_unless_the_environment_says(monkeypatch):
    import platform

    for name in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    assert xla_cpu.keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")  # the user's own allocator settings win
    assert xla_cpu.keep_freed_memory() is False
