"""Which precision a run computes its network in on this machine, decided once per process.

``precision: float32`` (the paper's; the default) always runs as asked. ``precision:
bfloat16`` runs the network in bfloat16 (:attr:`jstyle.objective.Objective.precision`)
where that is faster than float32, and otherwise falls back to float32 with the reason:

- on a GPU or TPU, XLA's own bfloat16 convolutions;
- on a CPU, oneDNN's (:mod:`jstyle.onednn`; XLA:CPU would convert them to float32), only
  when the CPU has bfloat16 instructions (AVX512-BF16 or AMX-BF16): elsewhere oneDNN
  emulates them or has no kernel, and float32 is the faster choice;
- never with ``sharding: spatial`` on a CPU, whose split XLA's partitioner makes and
  cannot make through a custom call.

``precision: float32`` on a CPU whose oneDNN has a float32 Winograd kernel (AVX-512) runs
its convolutions by Winograd's F(4x4, 3x3) through oneDNN (:mod:`jstyle.onednn`), about
three times faster than XLA's direct ones, unless the config says ``winograd: false``; the
same objective with other rounding. Where there is none (AVX2, no compiler or libdnnl, a
GPU, ``sharding: spatial``) it runs XLA's, as it always did: that is no fallback from what
was asked, so the header says nothing, and the sidecar names the kernel either way.

The run's header says when it fell back, and the sidecar records what was asked and what
ran (:func:`record`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

__all__ = ["Resolution", "resolve", "notice", "record"]


class Resolution(NamedTuple):
    """``requested`` and ``used`` precision; ``kernel``: what runs the convolutions
    (``"xla"``, or oneDNN's implementation name); ``reason``: why ``used`` is not
    ``requested`` (None when it is)."""

    requested: str
    used: str
    kernel: str
    reason: str | None = None

    @property
    def convolutions(self) -> str:
        """:attr:`jstyle.objective.Objective.convolutions`: ``"winograd"`` where a float32
        network's convolutions run through oneDNN, else ``"xla"``."""
        return "winograd" if self.used == "float32" and self.kernel != "xla" else "xla"


@functools.cache
def resolve(requested: str, sharding: str = "none", winograd: bool = True) -> Resolution:
    """The precision a run asking for ``requested`` uses here, and what runs its
    convolutions (see the module's text)."""
    import jax

    if requested == "float32":
        return _float32(sharding, winograd)
    backend = jax.default_backend()
    if backend != "cpu":
        return Resolution(requested, requested, "xla")
    if sharding == "spatial":
        return Resolution(requested, "float32", "xla",
                          "oneDNN's convolution cannot be split over devices by rows")
    from jstyle import onednn
    from jstyle.cache import kernels_dir

    try:
        kernels = onednn.load(kernels_dir())
    except RuntimeError as e:
        return Resolution(requested, "float32", "xla", str(e))
    if not kernels.native:
        return Resolution(requested, "float32", "xla",
                          f"this CPU has no bfloat16 instructions (oneDNN would run "
                          f"{kernels.implementation}, slower than float32)")
    return Resolution(requested, requested, f"onednn:{kernels.implementation}")


def _float32(sharding: str, winograd: bool) -> Resolution:
    import jax

    xla = Resolution("float32", "float32", "xla")
    if sharding == "spatial" or jax.default_backend() != "cpu":
        return xla
    from jstyle import onednn
    from jstyle.cache import kernels_dir

    # Loaded for every run on one CPU, winograd or not, so that the style losses' sorts
    # (onednn.match_rows, onednn.sort_columns) are the same in every process that runs a
    # config: a kept program (jstyle.programs) is found by the config, not by what a
    # process loaded.
    try:
        kernels = onednn.load(kernels_dir())
    except RuntimeError:  # no compiler, no libdnnl, or an AVX2 CPU: XLA's, as ever
        return xla
    if not winograd or kernels.winograd is None:
        return xla
    return Resolution("float32", "float32", f"onednn:{kernels.winograd}")


def notice(requested: str, sharding: str = "none") -> str | None:
    """The run header's line when ``requested`` falls back here (None when it does not)."""
    resolution = resolve(requested, sharding)
    if resolution.reason is None:
        return None
    return (f"jstyle: precision {requested} is not used here ({resolution.reason}); "
            f"running {resolution.used}")


def record(resolution: Resolution) -> dict:
    """The sidecar's ``precision`` entry."""
    out = {"requested": resolution.requested, "used": resolution.used,
           "convolutions": resolution.kernel}
    if resolution.reason:
        out["fallback"] = resolution.reason
    return out
