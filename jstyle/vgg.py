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

from jstyle.layers import CONV_CHANNELS, LAYERS, layer_index

POOLING = ("avg", "max")


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
                x = nn.Conv(CONV_CHANNELS[name][1], (3, 3), padding="SAME", name=name)(x)
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
