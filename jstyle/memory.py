"""How much memory a run will need, estimated before anything is allocated.

The estimate counts what dominates: the network's responses up to the deepest
layer used (each kept for the backward pass and met again by its gradient), the
optimiser's image-sized buffers, and a fixed part for the weights and the
runtime. It was fitted to measured peaks (resident memory on CPU of one
evaluation: 1.3 GB at 512x384 and 2.7 GB at 1024x768 for the paper's settings)
and is good to about a fifth either way; each run's sidecar records its measured
peak beside the estimate.

Rematerialisation (``remat``, ``jax.checkpoint`` at VGG-19's block boundaries) does not
change the estimate, because it does not change the peak: measured by
``python -m jstyle.bench.memory`` on 2 CPU cores, peak RSS 1315 MB without and 1301 MB
with at 512x384, 2925 MB and 3001 MB at 1024x768; XLA's temporary buffers of the compiled
L-BFGS loop 1390 MB and 1394 MB at 1024x768. The backward pass keeps little that remat
could drop -- the convolution's hand-written gradient keeps no inputs, a ReLU keeps a
one-byte mask, and the responses the losses read are needed either way -- and the peak is
the working set of block 1 at full resolution, which a checkpoint cannot shrink (even
with each block's losses inside its checkpoint: 378 MB against 369 MB at 512x384).
Splitting the rows over devices does shrink it (:mod:`jstyle.sharding`).
"""

from __future__ import annotations

import os

from jstyle.config import Config
from jstyle.errors import JStyleError
from jstyle.layers import CONV_CHANNELS, downsampling, layer_index

#: Weights (80 MB), XLA's runtime and jstyle's own arrays.
FIXED_BYTES = 600 * 2**20
#: Live copies of each convolution's response in the forward and backward passes.
RESPONSE_COPIES = 2.5


def estimate_bytes(height: int, width: int, config: Config) -> int:
    """Estimated peak memory of a run on a ``height`` x ``width`` image."""
    deepest = max(layer_index(n) for n, _ in config.content_layers + config.style_layers)
    responses = 0
    for name, (_, channels) in CONV_CHANNELS.items():
        if layer_index(name) <= deepest:
            d = downsampling(name)
            responses += (height // d) * (width // d) * channels * 4
    image = height * width * 3 * 4
    buffers = (2 * config.lbfgs_memory + 4 if config.optimizer == "lbfgs" else 4) * image
    return int(FIXED_BYTES + RESPONSE_COPIES * responses + buffers)


def available_bytes() -> int | None:
    """Memory this process can still have: the accelerator's, or the host's MemAvailable."""
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(height: int, width: int, config: Config) -> int:
    """The estimate for this run; a :class:`JStyleError` if it exceeds what is available."""
    need = estimate_bytes(height, width, config)
    have = available_bytes()
    if have is not None and need > have:
        gib = 2**30
        scale = ((have - FIXED_BYTES) / max(need - FIXED_BYTES, 1)) ** 0.5
        fits = int(config.size * max(scale, 0.0) * 0.9) // 16 * 16
        raise JStyleError(
            f"a {width}x{height} px run needs about {need / gib:.1f} GiB of memory but "
            f"{have / gib:.1f} GiB are available; use a smaller size (about {fits} px fits)"
            f"{' or optimizer: adam (less memory)' if config.optimizer == 'lbfgs' else ''}")
    return need
