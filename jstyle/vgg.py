"""VGG-19 (Simonyan & Zisserman, 2014) as a Flax module that returns named responses.

Only the 16 convolutions and 5 poolings are built (the classifier is never
needed). The module computes nothing past the deepest response asked for. Its
parameters are an explicit pytree ``{"conv1_1": {"kernel", "bias"}, ...}``
(kernels HWIO), so every loss built on it is a pure function of
``(params, image)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jstyle.layers import CONV_CHANNELS, LAYERS, layer_index

POOLING = ("avg", "max")
_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_DIMS)


@jax.custom_vjp
def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3x3, stride 1, SAME convolution (NHWC, HWIO) whose input gradient is itself a plain
    HWIO convolution with the flipped, transposed kernel.

    Mathematically the same as ``lax.conv_general_dilated``'s own derivative. It exists
    for speed: inside a loop (the optimiser's ``fori_loop`` and its line search) XLA:CPU
    compiles autodiff's transposed convolution, whose kernel layout is ``01oi``, to a
    naive loop nest instead of its library convolution -- four times slower per
    evaluation. Written as an ``01io`` convolution it takes the fast path everywhere.
    """
    return _conv(x, kernel)


def _conv3x3_fwd(x, kernel):
    return _conv(x, kernel), (x, kernel)


def _conv3x3_bwd(residuals, g):
    x, kernel = residuals
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)  # HWIO -> HWOI, read as HWIO
    dx = _conv(g, flipped)
    # The kernel's gradient (dead code under jit when, as here, only the image is varied).
    dkernel = jax.vjp(lambda k: _conv(x, k), kernel)[1](g)[0]
    return dx, dkernel


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


def _flax_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
               dimension_numbers=None, feature_group_count=1, precision=None, **_):
    """``nn.Conv``'s convolution hook, routed to :func:`conv3x3` (all VGG-19 needs)."""
    del window_strides, padding, lhs_dilation, rhs_dilation, feature_group_count, precision
    return conv3x3(lhs, rhs)


class VGG19(nn.Module):
    """VGG-19's feature layers.

    Attributes:
      outputs: names of the responses to return (see :mod:`jstyle.layers`).
      pooling: ``"max"`` as trained, or ``"avg"``, the paper's choice ("slightly
        more appealing results", sec. 2).
    """

    outputs: tuple[str, ...]
    pooling: str = "avg"

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """``x``: preprocessed images ``(B, H, W, 3)`` -> ``{name: (B, h, w, N)}``."""
        if self.pooling not in POOLING:
            raise ValueError(f"pooling must be one of {POOLING}, not {self.pooling!r}")
        if not self.outputs:
            return {}
        stop = max(layer_index(name) for name in self.outputs)
        features = {}
        for name in LAYERS[: stop + 1]:
            if name.startswith("conv"):
                x = nn.Conv(CONV_CHANNELS[name][1], (3, 3), padding="SAME", name=name,
                            conv_general_dilated=_flax_conv)(x)
            elif name.startswith("relu"):
                x = nn.relu(x)
            elif self.pooling == "avg":
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
            else:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            if name in self.outputs:
                features[name] = x
        return features


def extract_features(
    params: dict, x: jax.Array, layers: Sequence[str], pooling: str = "avg"
) -> dict[str, jax.Array]:
    """Responses of ``layers`` to preprocessed images ``x`` ``(B, H, W, 3)``; a pure function."""
    return VGG19(outputs=tuple(layers), pooling=pooling).apply({"params": params}, x)
