"""Exact tiled evaluation: the network run tile by tile, the loss and gradient of the whole.

Eq. 7 needs the whole image only through sums over positions: eq. 1 sums the content
error over positions and eq. 3's Gram matrices are sums of outer products over positions
(Gatys et al. 2016, sec. 2). So the responses need never exist for the whole image at
once: run VGG-19 on one crop at a time, add each crop's share of those sums, and apply
eqs. 4, 5 and 7 to the totals. A crop's responses equal the whole image's wherever the
crop covers the response's receptive field, so each crop is its tile (its *core*) plus a
*halo* as wide as the deepest layer's receptive field reaches, and only the core's
positions are counted. Crops start on the pooling grid (multiples of the deepest
layer's downsampling), so their poolings pool the same pixels as the whole image's, and
a crop that reaches a border of the image is cut there, where its zero padding is the
whole image's.

Differentiated by JAX's own autodiff: the tiles are a ``lax.scan`` whose body is
rematerialised (``jax.checkpoint``), so the forward pass keeps only the running sums and
the backward pass runs each crop's network again, forward then backward, with the global
sums' cotangent (the global G - A of eq. 6), adding each crop's gradient into the
image's. Loss and gradient are the whole image's, up to the order of floating-point
sums; the memory is one crop's network, whatever the image's size; the work is one
forward pass more than an untiled evaluation, plus the halos'.

Every crop has the same shape, so one compiled body serves every tile: interior crops
are core plus two halos, a crop at a border slides inwards, and the crop's length is
chosen congruent to the image's modulo the grid so that a crop that ends at the far
border also starts on the grid.

References:
  Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks",
  CVPR 2016: eqs. 1, 3-7.
  Griewank & Walther, "Algorithm 799: revolve", ACM TOMS 2000: recomputing a forward
  pass in the backward one to bound the memory (``jax.checkpoint``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle.layers import CONV_LAYERS, deepest, downsampling, layer_index
from jstyle.options import HEIGHT_AXIS

__all__ = ["Plan", "radius", "halo", "grid", "plan", "crop_shape", "crop", "at_layer",
           "core_mask", "layer_size", "scan", "split_axis", "shares"]

Array = jax.Array


def radius(layers: Sequence[str]) -> int:
    """How far, in pixels, the receptive field of a response among ``layers`` reaches
    beyond the pixels its position covers: each 3x3 convolution at downsampling d adds d on
    each side; a 2x2 pooling adds nothing beyond the pixels it pools (relu5_1: 70)."""
    last = layer_index(deepest(layers))
    return sum(downsampling(c) for c in CONV_LAYERS if layer_index(c) <= last)


def grid(layers: Sequence[str]) -> int:
    """The pooling grid of ``layers``: crops start on multiples of it (relu5_1: 16)."""
    return downsampling(deepest(layers))


def halo(layers: Sequence[str]) -> int:
    """The halo each crop carries beyond its core: :func:`radius` rounded up to the grid."""
    g = grid(layers)
    return _ceil(radius(layers), g) * g


def layer_size(length: int, factor: int) -> int:
    """Positions along one axis of a response ``factor`` times smaller than ``length``
    pixels: each 2x2 pooling drops an odd last row, so ``length // factor``."""
    return length // factor


class Plan(NamedTuple):
    """The tiles of one image: the crops' shared shape and, per tile, where it lies.

    ``tiles`` ``(T, 6)`` int32, one row per tile: the crop's first row and column, then
    the core's rows ``[r0, r1)`` and columns ``[c0, c1)``, all in pixels of the image.
    """

    crop: tuple[int, int]
    tiles: np.ndarray

    @property
    def count(self) -> int:
        return len(self.tiles)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _axis_crop(length: int, tile: int, g: int, h: int) -> tuple[int, int]:
    """One axis's crop length and core stride (the crop is the whole axis when one crop
    covers it)."""
    n = _ceil(length, tile)
    core = _ceil(_ceil(length, n), g) * g  # the tile, evened out over n, up to the grid
    crop = core + 2 * h + length % g  # congruent to length modulo g: see the module doc
    if n == 1 or crop >= length:
        return length, length
    return crop, core


def _axis(length: int, tile: int, g: int, h: int) -> tuple[int, list[tuple[int, int, int]]]:
    """One axis's crop length and its (crop start, core start, core end) triples."""
    crop, core = _axis_crop(length, tile, g, h)
    if crop == length:
        return length, [(0, 0, length)]
    spans = []
    for k in range(_ceil(length, core)):
        start, end = k * core, min((k + 1) * core, length)
        spans.append((min(max(start - h, 0), length - crop), start, end))
    return crop, spans


def crop_shape(height: int, width: int, tile: int,
               layers: Sequence[str]) -> tuple[int, int] | None:
    """The crops' shape in :func:`plan`'s tiles, or None where it makes none; without
    listing the tiles (a memory estimate at any size costs microseconds)."""
    if tile <= 0:
        return None
    g, h = grid(layers), halo(layers)
    tile = max(tile // g * g, g)
    crop_h, crop_w = _axis_crop(height, tile, g, h)[0], _axis_crop(width, tile, g, h)[0]
    if crop_h == height and crop_w == width:
        return None
    return crop_h, crop_w


def plan(height: int, width: int, tile: int, layers: Sequence[str]) -> Plan | None:
    """The tiles of a ``height`` x ``width`` image with cores of at most ``tile`` pixels a
    side (rounded down to the grid, at least one grid cell) for a network read at
    ``layers``; None when one crop would be the whole image (no tiling to do)."""
    if tile <= 0:
        return None
    g, h = grid(layers), halo(layers)
    tile = max(tile // g * g, g)
    crop_h, rows = _axis(height, tile, g, h)
    crop_w, cols = _axis(width, tile, g, h)
    if len(rows) == 1 and len(cols) == 1:
        return None
    tiles = [(ry, cx, r0, r1, c0, c1) for ry, r0, r1 in rows for cx, c0, c1 in cols]
    return Plan((crop_h, crop_w), np.asarray(tiles, np.int32))


def crop(image: Array, tile: Array, size: tuple[int, int]) -> Array:
    """The crop of an image ``(H, W, C)`` that tile row ``tile`` (a row of
    :attr:`Plan.tiles`) names."""
    return jax.lax.dynamic_slice(image, (tile[0], tile[1], 0), (*size, image.shape[-1]))


def at_layer(full: Array, tile: Array, size: tuple[int, int], factor: int,
             channels_last: bool = True) -> Array:
    """The part of a whole image's response ``(h, w, N)`` -- or of masks ``(R, h, w)``,
    ``channels_last=False`` -- under tile ``tile``'s crop, at a layer ``factor`` times
    smaller than the image; ``size`` is the crop's size in pixels."""
    h, w = layer_size(size[0], factor), layer_size(size[1], factor)
    r, c = tile[0] // factor, tile[1] // factor
    if channels_last:
        return jax.lax.dynamic_slice(full, (r, c, 0), (h, w, full.shape[-1]))
    return jax.lax.dynamic_slice(full, (0, r, c), (full.shape[0], h, w))


def core_mask(tile: Array, size: tuple[int, int], factor: int) -> Array:
    """1 at the positions of tile ``tile``'s core in its crop's response ``factor`` times
    smaller than the image, else 0: ``(h, w)`` float32."""
    h, w = layer_size(size[0], factor), layer_size(size[1], factor)
    rows = tile[0] // factor + jnp.arange(h)
    cols = tile[1] // factor + jnp.arange(w)
    inside_r = (rows >= tile[2] // factor) & (rows < tile[3] // factor)
    inside_c = (cols >= tile[4] // factor) & (cols < tile[5] // factor)
    return (inside_r[:, None] & inside_c[None, :]).astype(jnp.float32)


def _sum(body: Callable[[Array], Any], tiles: Array, axis: str | None = None) -> Any:
    step = jax.checkpoint(body)
    first = jax.eval_shape(body, jnp.zeros(6, jnp.int32))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), first)
    if axis is not None:  # each device's sums differ (its own tiles'): varying over the axis
        zeros = jax.tree.map(lambda z: jax.lax.pcast(z, (axis,), to="varying"), zeros)

    def add(total, tile):
        return jax.tree.map(jnp.add, total, step(tile)), None

    return jax.lax.scan(add, zeros, tiles)[0]


def split_axis() -> tuple[str, int] | None:
    """The mesh axis that tiles are shared out over, with its size: the ambient abstract
    mesh's (``jax.sharding.use_abstract_mesh``, as :mod:`jstyle.engine` traces a spatial
    run) image-rows axis (:data:`jstyle.options.HEIGHT_AXIS`) when it spans
    more than one device and is not already manual (inside ``shard_map``); else None."""
    mesh = jax.sharding.get_abstract_mesh()
    if HEIGHT_AXIS not in mesh.axis_names:
        return None
    size = mesh.shape[HEIGHT_AXIS]
    kind = mesh.axis_types[mesh.axis_names.index(HEIGHT_AXIS)]
    if size < 2 or kind == jax.sharding.AxisType.Manual:
        return None
    return HEIGHT_AXIS, size


def shares(plan: Plan, devices: int) -> np.ndarray:
    """The plan's tiles dealt out to ``devices`` devices, ``(devices, k, 6)``: each device a
    run of consecutive tiles (tile rows, so its own band of the image, as far as the counts
    allow), the last ones padded with tiles whose core is empty (they add nothing)."""
    k = _ceil(plan.count, devices)
    empty = np.zeros((devices * k - plan.count, 6), np.int32)
    return np.concatenate([plan.tiles, empty]).reshape(devices, k, 6)


def scan(body: Callable[..., Any], plan: Plan, *operands: Any) -> Any:
    """The sum over the plan's tiles of ``body(tile, *operands)`` (a pytree of arrays), as
    a ``lax.scan`` whose body is rematerialised: differentiating it runs each tile's network
    again in the backward pass instead of keeping every tile's responses.

    Under a mesh whose image-rows axis spans several devices (:func:`split_axis`: a run
    with ``sharding: spatial``), the tiles are dealt out over that axis (:func:`shares`,
    ``jax.shard_map``): each device scans its own, and the sums are added over the devices
    (``psum``; in the backward pass each device's image gradient is its own tiles', and
    JAX adds them). ``operands`` (the image and what the body reads) then go to every
    device whole: an image-sized array, small beside one crop's network."""
    split = split_axis()
    if split is None:
        return _sum(lambda tile: body(tile, *operands), jnp.asarray(plan.tiles))
    axis, devices = split

    def local(tiles, *operands):
        total = _sum(lambda tile: body(tile, *operands), tiles[0], axis)
        return jax.tree.map(lambda a: jax.lax.psum(a, axis), total)

    replicated = jax.tree.map(lambda _: jax.sharding.PartitionSpec(), operands)
    return jax.shard_map(local, in_specs=(jax.sharding.PartitionSpec(axis), *replicated),
                         out_specs=jax.sharding.PartitionSpec())(
        jnp.asarray(shares(plan, devices)), *operands)
