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
Splitting the rows over devices does shrink it (:mod:`jstyle.sharding`), and so does exact
tiled evaluation (``tile_size``, :mod:`jstyle.tiling`): the network's working set is then
one crop's, and what grows with the image is only what is image-sized -- the L-BFGS
history (2 x ``lbfgs_memory`` images), the optimiser's other vectors, the content target
P^l and the gradient's accumulator. ``tile_size: auto`` runs the image whole when its
estimate fits in :data:`WHOLE_BUDGET` of the memory available (tiles cost time), else
picks the largest tile whose estimate fits in :data:`TILE_BUDGET` of it.

Float32 convolutions by Winograd (``winograd: true`` where the CPU has the kernel,
:mod:`jstyle.onednn`) add the kept transformed kernels (:data:`WINOGRAD_KERNEL_BYTES`) and
one layer's working memory, shared by all: its blocked input and output and the
transformed tiles, :data:`WINOGRAD_WORK` times the first block's response (measured at
512x384: peak RSS 2.02 GB against 1.21 GB with XLA's convolutions, one evaluation).
``precision: bfloat16`` through oneDNN adds its kept kernels
(:data:`BFLOAT16_KERNEL_BYTES`).
"""

from __future__ import annotations

import bisect
import os
from typing import Any

from jstyle.config import Config
from jstyle.errors import JStyleError
from jstyle.layers import CONV_CHANNELS, channels, downsampling, layer_index
from jstyle.options import MIN_TILE, TILE_AUTO

#: Weights (80 MB), XLA's runtime and jstyle's own arrays.
FIXED_BYTES = 600 * 2**20
#: Live copies of each convolution's response in the forward and backward passes.
RESPONSE_COPIES = 2.5
#: The Winograd kernels' transforms jstyle keeps (forward and backward, up to relu5_1: four
#: times each kernel, 0.4 GB, and the kernels they were made from; capped at 1 GiB).
WINOGRAD_KERNEL_BYTES = 600 * 2**20
#: oneDNN's bfloat16 kernels jstyle keeps (``precision: bfloat16`` on the CPU: forward and
#: backward, up to relu5_1, each in oneDNN's layout and as it came: four times the 26 MB
#: of 12.9 million bfloat16 weights).
BFLOAT16_KERNEL_BYTES = 104 * 2**20
#: The Winograd convolution's working memory in first-block responses (the largest layer):
#: its input and output blocked (2), and their transformed tiles (2.25 times each).
WINOGRAD_WORK = 6.5


#: The shares of the memory available that ``tile_size: auto`` plans a run to use: whole,
#: up to :data:`WHOLE_BUDGET` (the estimate is good to about a fifth, and tiles cost one
#: forward pass more per evaluation and their halos); in tiles, :data:`TILE_BUDGET`, for
#: past about 1024 px a side larger tiles save little time (their halos are a small part)
#: and the machine runs other things.
WHOLE_BUDGET = 0.8
TILE_BUDGET = 0.5
#: Image-sized arrays a tiled evaluation adds: the gradient's accumulator and its copy.
TILED_IMAGES = 2


def _layers(config: Config) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for n, _ in config.content_layers + config.style_layers))


def tileable(config: Config) -> bool:
    """Whether a config's objective can be evaluated in tiles: eq. 4's Gram matrices are
    sums over positions, the other style losses are not."""
    return all(name == "gram" for name, _ in config.style_loss)


def _crops_at_once(config: Config) -> int:
    """How many crops' networks share this host's memory at once: with ``sharding:
    spatial`` on the CPU, one per (host-platform) device, each scanning its own tiles with
    the image and P^l whole (:func:`jstyle.tiling.scan`); else one (an accelerator holds
    its own crop)."""
    if config.sharding != "spatial":
        return 1
    import jax

    return len(jax.local_devices()) if jax.default_backend() == "cpu" else 1


def _kernels(config: Config) -> str:
    """What computes a run's convolutions here: ``"winograd"`` (float32, oneDNN),
    ``"bfloat16"`` (oneDNN) or ``"xla"``."""
    from jstyle.precision import resolve

    used = resolve(config.precision, config.sharding, config.winograd)
    if used.convolutions == "winograd":
        return "winograd"
    return "bfloat16" if used.used == "bfloat16" and used.kernel != "xla" else "xla"


def estimate_bytes(height: int, width: int, config: Config, tile: int | None = None) -> int:
    """Estimated peak memory of a run on a ``height`` x ``width`` image, with tiles of
    ``tile`` pixels (None: the config's :func:`tile_size`; 0: the whole image at once)."""
    if tile is None:
        tile = tile_size(height, width, config)
    layers = _layers(config)
    from jstyle import tiling  # imported here: it imports JAX, which a size check needs not

    crop = tiling.crop_shape(height, width, tile, layers) if tile else None
    net_h, net_w = (height, width) if crop is None else crop
    deepest = max(layer_index(n) for n in layers)
    responses = 0
    for name, (_, n) in CONV_CHANNELS.items():
        if layer_index(name) <= deepest:
            d = downsampling(name)
            responses += (net_h // d) * (net_w // d) * n * 4
    image = height * width * 3 * 4
    buffers = (2 * config.lbfgs_memory + 4 if config.optimizer == "lbfgs" else 4) * image
    kernels = _kernels(config)
    if kernels == "winograd":
        buffers += WINOGRAD_KERNEL_BYTES + WINOGRAD_WORK * net_h * net_w * 64 * 4
    elif kernels == "bfloat16":
        buffers += BFLOAT16_KERNEL_BYTES
    if crop is not None:  # what stays whole: P^l and the gradient's accumulators
        whole = TILED_IMAGES * image
        for name, _ in config.content_layers:
            d = downsampling(name)
            whole += (height // d) * (width // d) * channels(name) * 4
        at_once = _crops_at_once(config)
        buffers += at_once * whole
        responses *= at_once
    return int(FIXED_BYTES + RESPONSE_COPIES * responses + buffers)


def tile_size(height: int, width: int, config: Config) -> int:
    """The tile a run on a ``height`` x ``width`` image uses, in pixels (0: none): the
    config's number, or for ``auto`` none when the whole image's estimate fits in
    :data:`WHOLE_BUDGET` of the memory available, else the largest tile whose estimate
    fits in :data:`TILE_BUDGET` of it -- or, when the image-sized part alone overruns that,
    the largest that fits in all of it (the smallest, :data:`MIN_TILE`, when none does:
    :func:`check_memory` says so)."""
    if config.tile_size != TILE_AUTO:
        return int(config.tile_size)
    if not tileable(config):
        return 0
    key = (height, width, config)
    if key not in _AUTO:
        _AUTO[key] = _auto_tile(height, width, config)
    return _AUTO[key]


#: ``tile_size: auto``'s decisions in this process, by image size and config: made once, so
#: that the header, the run and its sidecar agree however the memory available moves.
_AUTO: dict[tuple[int, int, Config], int] = {}


def _auto_tile(height: int, width: int, config: Config) -> int:
    have = available_bytes()
    if have is None or estimate_bytes(height, width, config, 0) <= WHOLE_BUDGET * have:
        return 0
    from jstyle import tiling

    g = tiling.grid(_layers(config))
    candidates = range(-(-MIN_TILE // g) * g, max(height, width) // g * g + 1, g)
    for budget in (TILE_BUDGET * have, have):  # within the budget if it can, else all of it
        # A smaller tile never needs more: bisect for the last candidate that fits.
        fits = bisect.bisect_right(
            candidates, False, key=lambda t: estimate_bytes(height, width, config, t) > budget)
        if fits:
            return candidates[fits - 1]
    return MIN_TILE


def tiling_record(height: int, width: int, config: Config) -> dict[str, Any]:
    """The sidecar's account of the tiles of the full-size image: the ``tile_size`` asked
    for, the one used, the tiles, their crops' shape and the halo (all in pixels)."""
    tile = tile_size(height, width, config)
    from jstyle import tiling

    plan = tiling.plan(height, width, tile, _layers(config)) if tile else None
    return {"tile_size": config.tile_size, "used": tile if plan is not None else 0,
            "tiles": 1 if plan is None else plan.count,
            "crop": None if plan is None else list(plan.crop),
            "halo": None if plan is None else tiling.halo(_layers(config))}


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


def _fitting_size(height: int, width: int, config: Config, have: int) -> int:
    """About the largest ``size`` (longest side, a multiple of 16) whose estimate fits in
    ``have`` bytes, the image's aspect kept (bisection on the scale)."""
    low, high = 0.0, 1.0
    for _ in range(20):
        scale = (low + high) / 2
        h, w = max(int(height * scale), 1), max(int(width * scale), 1)
        low, high = (scale, high) if estimate_bytes(h, w, config) <= have else (low, scale)
    return int(config.size * low * 0.9) // 16 * 16


def check_memory(height: int, width: int, config: Config) -> int:
    """The estimate for this run; a :class:`JStyleError` if it exceeds what is available."""
    need = estimate_bytes(height, width, config)
    have = available_bytes()
    if have is not None and need > have:
        gib = 2**30
        tiled = tile_size(height, width, config)
        fits = _fitting_size(height, width, config, have)
        if tiled:
            fix = (f"most of it is image-sized (the L-BFGS history of {config.lbfgs_memory} "
                   f"steps: lower lbfgs_memory"
                   f"{', or optimizer: adam' if config.optimizer == 'lbfgs' else ''}), or use "
                   f"a smaller size (about {fits} px fits)")
        else:
            fix = (f"use a smaller size (about {fits} px fits)"
                   f"{' or optimizer: adam (less memory)' if config.optimizer == 'lbfgs' else ''}"
                   f"{', or tile_size: auto' if tileable(config) else ''}")
        raise JStyleError(
            f"a {width}x{height} px run needs about {need / gib:.1f} GiB of memory but "
            f"{have / gib:.1f} GiB are available{f' (in tiles of {tiled} px)' if tiled else ''}"
            f"; {fix}")
    return need
