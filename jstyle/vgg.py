"""VGG-19 (Simonyan & Zisserman, 2014) as a Flax module that returns named responses.

Only the 16 convolutions and 5 poolings are built (the classifier is never
needed). The module computes nothing past the deepest response asked for. Its
parameters are an explicit pytree ``{"conv1_1": {"kernel", "bias"}, ...}``
(kernels HWIO), so every loss built on it is a pure function of
``(params, image)``.

With ``remat=True`` each block (its convolutions, ReLUs and pooling) is wrapped in
``jax.checkpoint`` (Flax's lifted ``nn.remat``): the backward pass keeps only each
block's input and the responses asked for, and recomputes the rest of the block
when it needs it, for one more forward pass. The responses, their gradients and the
parameter tree are the same either way. What it saves here is small (the gradient of
:func:`conv3x3` keeps no inputs, a ReLU keeps a one-byte mask): measured, the peak
memory of the paper's objective does not drop (:mod:`jstyle.memory`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jstyle import onednn
from jstyle.layers import CONV_CHANNELS, LAYERS, layer_index
from jstyle.options import POOLING

__all__ = ["VGG19", "extract_features", "conv3x3", "winograd_conv3x3", "POOLING"]

_DIMS = ("NHWC", "HWIO", "NHWC")


def _flipped(kernel: jax.Array) -> jax.Array:
    """The input gradient's kernel: flipped in space, HWIO -> HWOI, read as HWIO."""
    return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


def _xla_conv(x: jax.Array, kernel: jax.Array, flipped: bool = False) -> jax.Array:
    return jax.lax.conv_general_dilated(x, _flipped(kernel) if flipped else kernel, (1, 1),
                                        "SAME", dimension_numbers=_DIMS)


def _conv(x: jax.Array, kernel: jax.Array, flipped: bool = False) -> jax.Array:
    # XLA:CPU converts a bfloat16 convolution to float32 and back; oneDNN, once
    # jstyle.onednn.load has registered it, runs it in bfloat16 (see that module).
    if x.dtype == jnp.bfloat16 and onednn.loaded() and jax.default_backend() == "cpu":
        return onednn.conv3x3(x, kernel, flipped)
    return _xla_conv(x, kernel, flipped)


def _winograd(x: jax.Array, kernel: jax.Array, flipped: bool = False) -> jax.Array:
    if min(kernel.shape[-2:]) < onednn.MIN_WINOGRAD_CHANNELS:  # the RGB layer: the direct
        return _xla_conv(x, kernel, flipped)  # form is faster
    return onednn.winograd_conv3x3(x, kernel, flipped)


def _transposing(conv, doc: str):
    """``conv`` (x, HWIO kernel, flipped) -> y as a differentiable 3x3 convolution whose
    input gradient is ``conv`` with the flipped, transposed kernel, ``conv(g, kernel,
    True)`` (where the kernels' library runs ``conv``, it makes that kernel once per run
    rather than XLA at every evaluation); the kernel's gradient, when asked for, is XLA's."""

    def primal(x: jax.Array, kernel: jax.Array) -> jax.Array:
        return conv(x, kernel)

    primal.__doc__ = doc
    f = jax.custom_vjp(primal)

    def forward(x, kernel):
        # symbolic_zeros: the arguments come as CustomVJPPrimal (value, perturbed). The
        # input is kept only when the kernel's gradient is wanted; the image's gradient
        # needs the kernel.
        return conv(x.value, kernel.value), (x.value if kernel.perturbed else None,
                                             kernel.value)

    def backward(residuals, g):
        x, kernel = residuals
        dx = conv(g, kernel, True)
        # The kernel's gradient, only when the kernel is differentiated: never computed for
        # an image's gradient, even under vmap, which would otherwise batch it per image.
        dkernel = None if x is None else jax.vjp(lambda k: _xla_conv(x, k), kernel)[1](g)[0]
        return dx, dkernel

    f.defvjp(forward, backward, symbolic_zeros=True)
    return f


conv3x3 = _transposing(_conv, """3x3, stride 1, SAME convolution (NHWC, HWIO) whose input
    gradient is itself a plain HWIO convolution with the flipped, transposed kernel.

    Mathematically the same as ``lax.conv_general_dilated``'s own derivative. It exists
    for speed: inside a loop (the optimiser's ``while_loop`` and its line search) XLA:CPU
    compiles autodiff's transposed convolution, whose kernel layout is ``01oi``, to a
    naive loop nest instead of its library convolution -- four times slower per
    evaluation. Written as an ``01io`` convolution it takes the fast path everywhere.

    In bfloat16 on the CPU, with :func:`jstyle.onednn.load` done, both directions run
    through oneDNN's bfloat16 kernels (float32 accumulation) instead of XLA's float32 ones.
    """)

winograd_conv3x3 = _transposing(_winograd, """:func:`conv3x3` in float32 by oneDNN's
    Winograd kernel F(4x4, 3x3), both directions (the input gradient is the convolution
    with the flipped, transposed kernel), where :func:`jstyle.onednn.load` found one; the
    layers with fewer than :data:`jstyle.onednn.MIN_WINOGRAD_CHANNELS` channels on either
    side stay direct (XLA). The kernel's gradient, when asked for, is XLA's.""")

#: The convolutions a network may run with: XLA's (and oneDNN's bfloat16 kernel for a
#: bfloat16 network, see :func:`conv3x3`), or float32 by Winograd through oneDNN.
CONVOLUTIONS = {"xla": conv3x3, "winograd": winograd_conv3x3}


def _flax_conv(convolutions: str):
    """``nn.Conv``'s convolution hook, routed to :data:`CONVOLUTIONS` ``[convolutions]``
    (a 3x3 SAME convolution: all VGG-19 needs)."""
    conv = CONVOLUTIONS[convolutions]

    def hook(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
             dimension_numbers=None, feature_group_count=1, precision=None, **_):
        del window_strides, padding, lhs_dilation, rhs_dilation, feature_group_count, precision
        return conv(lhs, rhs)

    return hook


def _pool_by_reshape(x: jax.Array, pooling: str) -> jax.Array:
    """VGG-19's 2x2, stride 2, VALID pooling (``"avg"`` or ``"max"``) of ``(..., H, W, C)``
    as a reshape and a reduction over the windows' axes, the average's sum in float32.
    For bfloat16, whose reduce-window (forward and gradient) XLA:CPU has no fast path for
    (the README's bfloat16 section has the measurement)."""
    *lead, h, w, c = x.shape
    windows = x[..., : h // 2 * 2, : w // 2 * 2, :].reshape(*lead, h // 2, 2, w // 2, 2, c)
    if pooling == "avg":
        return jnp.mean(windows, axis=(-4, -2), dtype=jnp.float32).astype(x.dtype)
    return jnp.max(windows, axis=(-4, -2))


def _block(module: nn.Module, x: jax.Array, names: tuple[str, ...], pooling: str,
           outputs: tuple[str, ...], convolutions: str = "xla",
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The layers ``names`` (one block's, in order) applied to ``x``; the last response and
    the ones among ``outputs``. Convolutions are created in ``module``'s scope, so the
    parameter tree stays flat (``{"conv1_1": ...}``) with or without rematerialisation."""
    features = {}
    for name in names:
        if name.startswith("conv"):
            x = nn.Conv(CONV_CHANNELS[name][1], (3, 3), padding="SAME", name=name,
                        conv_general_dilated=_flax_conv(convolutions), parent=module)(x)
        elif name.startswith("relu"):
            x = nn.relu(x)
        elif x.dtype == jnp.bfloat16:
            x = _pool_by_reshape(x, pooling)
        elif pooling == "avg":
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        else:
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        if name in outputs:
            features[name] = x
    return x, features


#: :func:`_block` rematerialised: recomputed in the backward pass instead of stored.
_remat_block = nn.remat(_block, static_argnums=(2, 3, 4, 5))


class VGG19(nn.Module):
    """VGG-19's feature layers.

    Attributes:
      outputs: names of the responses to return (see :mod:`jstyle.layers`).
      pooling: ``"max"`` as trained, or ``"avg"``, the paper's choice ("slightly
        more appealing results", sec. 2).
      remat: wrap each block in ``jax.checkpoint`` (rematerialisation): same outputs and
        gradients, each block recomputed in the backward pass.
      convolutions: ``"xla"``, or ``"winograd"`` (float32 through oneDNN's Winograd kernel,
        :func:`winograd_conv3x3`; :func:`jstyle.onednn.load` first).
    """

    outputs: tuple[str, ...]
    pooling: str = "avg"
    remat: bool = False
    convolutions: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """``x``: preprocessed images ``(B, H, W, 3)`` -> ``{name: (B, h, w, N)}``."""
        if self.pooling not in POOLING:
            raise ValueError(f"pooling must be one of {POOLING}, not {self.pooling!r}")
        if self.convolutions not in CONVOLUTIONS:
            raise ValueError(f"convolutions must be one of {tuple(CONVOLUTIONS)}, not "
                             f"{self.convolutions!r}")
        if not self.outputs:
            return {}
        stop = max(layer_index(name) for name in self.outputs)
        block = _remat_block if self.remat else _block
        features = {}
        # Layer names are "<kind><block>_<index>" or "pool<block>": character 4 is the block.
        for _, names in itertools.groupby(LAYERS[: stop + 1], key=lambda name: name[4]):
            names = tuple(names)
            x, out = block(self, x, names, self.pooling, tuple(self.outputs), self.convolutions)
            features.update((n, out[n]) for n in names if n in out)  # in network order
        return features


def extract_features(
    params: dict, x: jax.Array, layers: Sequence[str], pooling: str = "avg", remat: bool = False,
    convolutions: str = "xla",
) -> dict[str, jax.Array]:
    """Responses of ``layers`` to preprocessed images ``x`` ``(B, H, W, 3)``; a pure function.

    ``remat``: rematerialise each block in the backward pass; ``convolutions``: ``"xla"``
    or ``"winograd"`` (see :class:`VGG19`).
    """
    return VGG19(outputs=tuple(layers), pooling=pooling, remat=remat,
                 convolutions=convolutions).apply({"params": params}, x)
