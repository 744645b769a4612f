"""Joining a run of several hosts (``jax.distributed``), apart from the rest of the
sharding (:mod:`jstyle.sharding`) so that a one-host run decides it without importing
JAX: that import is much of a run's start, which the kernels' preparation
(:func:`jstyle.pipeline.prepare_kernels`) overlaps."""

from __future__ import annotations

import os
from collections.abc import Mapping

from jstyle.errors import JStyleError

__all__ = ["COORDINATOR_ENV", "NUM_PROCESSES_ENV", "PROCESS_ID_ENV", "initialize_distributed"]

#: Environment variables of a multi-host run (see :func:`initialize_distributed`).
COORDINATOR_ENV = "JSTYLE_COORDINATOR"
NUM_PROCESSES_ENV = "JSTYLE_NUM_PROCESSES"
PROCESS_ID_ENV = "JSTYLE_PROCESS_ID"


def initialize_distributed(environ: Mapping[str, str] | None = None) -> bool:
    """Join a multi-host run when ``JSTYLE_COORDINATOR`` is set; must precede any JAX work.

    ``JSTYLE_COORDINATOR=host:port`` (process 0's address, a free port),
    ``JSTYLE_NUM_PROCESSES`` and ``JSTYLE_PROCESS_ID`` (0 .. n-1) are passed on to
    ``jax.distributed.initialize``, after which ``jax.devices()`` lists every process's
    devices. Returns whether it initialised; without ``JSTYLE_COORDINATOR`` nothing
    happens (a single host), and on clusters that JAX detects itself (Slurm, Open MPI,
    Cloud TPU) calling ``jax.distributed.initialize()`` directly is enough.
    """
    env = os.environ if environ is None else environ
    coordinator = env.get(COORDINATOR_ENV)
    if not coordinator:
        return False
    missing = [k for k in (NUM_PROCESSES_ENV, PROCESS_ID_ENV) if not env.get(k)]
    if missing:
        raise JStyleError(f"{COORDINATOR_ENV} is set but {' and '.join(missing)} not; set "
                          f"{NUM_PROCESSES_ENV} (the number of hosts) and {PROCESS_ID_ENV} "
                          "(0 .. number - 1) on every host")
    try:
        count, index = int(env[NUM_PROCESSES_ENV]), int(env[PROCESS_ID_ENV])
    except ValueError:
        raise JStyleError(f"{NUM_PROCESSES_ENV} and {PROCESS_ID_ENV} must be whole numbers, "
                          f"not {env[NUM_PROCESSES_ENV]!r} and {env[PROCESS_ID_ENV]!r}") from None
    if not 0 <= index < count:
        raise JStyleError(f"{PROCESS_ID_ENV}={index} is out of range for {NUM_PROCESSES_ENV}="
                          f"{count}; number the hosts 0 .. {count - 1}")
    import jax

    jax.distributed.initialize(coordinator, num_processes=count, process_id=index)
    return True
