"""The layers of VGG-19 (Simonyan & Zisserman, 2014), named once for all of jstyle.

Naming follows the reference style-transfer tools: ``convB_I`` is the
pre-activation of convolution I in block B, ``reluB_I`` its rectified response
and ``poolB`` the pooling that closes block B. The paper's F^l (Gatys et al.
2016, sec. 2) is the *rectified* response -- Caffe applies its ReLU in place,
so the layer the paper calls "conv4_2" is jstyle's ``relu4_2``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BLOCKS", "CONV_LAYERS", "LAYERS", "CONV_CHANNELS", "PAPER_CONTENT_LAYERS",
    "PAPER_STYLE_LAYERS", "layer_index", "deepest", "channels", "relu_of", "downsampling"]

# (output channels, number of convolutions) of each of VGG-19's five blocks.
BLOCKS: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))

#: The 16 convolutions, in network order.
CONV_LAYERS: tuple[str, ...] = tuple(
    f"conv{b}_{i}" for b, (_, n) in enumerate(BLOCKS, start=1) for i in range(1, n + 1)
)


def _all_layers() -> tuple[str, ...]:
    names: list[str] = []
    for b, (_, n) in enumerate(BLOCKS, start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return tuple(names)


#: Every named response of the network (conv, relu and pool), in network order.
LAYERS: tuple[str, ...] = _all_layers()

#: (input channels, output channels) of each convolution.
CONV_CHANNELS: dict[str, tuple[int, int]] = {}
_cin = 3
for _b, (_cout, _n) in enumerate(BLOCKS, start=1):
    for _i in range(1, _n + 1):
        CONV_CHANNELS[f"conv{_b}_{_i}"] = (_cin, _cout)
        _cin = _cout
del _b, _cout, _n, _i, _cin

#: The paper's choice (Gatys et al. 2016, sec. 3): content from "conv4_2",
#: style from "conv1_1" ... "conv5_1", i.e. their rectified responses.
PAPER_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
PAPER_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def layer_index(name: str) -> int:
    """Position of ``name`` in :data:`LAYERS`; ``KeyError`` with the valid names if unknown."""
    try:
        return LAYERS.index(name)
    except ValueError:
        valid = ", ".join(LAYERS)
        raise KeyError(f"unknown VGG-19 layer {name!r}; valid layers: {valid}") from None


def deepest(names: Iterable[str]) -> str:
    """The deepest of ``names`` in network order: the network need not run past it."""
    return max(names, key=layer_index)


def channels(name: str) -> int:
    """Number of channels (N_l in the paper) of the response ``name``."""
    layer_index(name)
    return BLOCKS[int(name[4]) - 1][0]


def relu_of(conv: str) -> str:
    """The rectified response of a convolution: ``conv3_2`` -> ``relu3_2``."""
    layer_index(conv)
    return "relu" + conv.removeprefix("conv")


def downsampling(name: str) -> int:
    """How many times smaller than the input the response ``name`` is (1, 2, ..., 32)."""
    layer_index(name)
    block = int(name[4])
    return 2 ** (block if name.startswith("pool") else block - 1)
