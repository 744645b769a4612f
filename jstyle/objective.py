"""The style-transfer objective (eq. 7) of an image, wired from the network and the losses.

The optimised variable is the image itself: RGB in [0, 1], ``(H, W, 3)``,
unconstrained while optimising (clipped only when saved). Targets -- the content
photo's responses P^l and the style image's Gram matrices A^l -- are computed
once by :func:`compute_targets` and then passed in, so every function here is a
pure function of explicit arrays and jit-compiles without baking weights or
targets into the program as constants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jstyle import losses
from jstyle.layers import downsampling
from jstyle.preprocessing import Preprocessing, to_network
from jstyle.vgg import extract_features

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Objective:
    """Static description of eq. 7: which layers, with which weights.

    Hashable, so it can be a static argument of ``jax.jit``.

    Attributes:
      content_layers: ``((name, weight), ...)`` for eq. 1 (the paper: relu4_2, 1).
      style_layers: ``((name, w_l), ...)`` for eq. 5 (the paper: relu1_1..relu5_1, 1/5).
      content_weight: alpha.
      style_weight: beta.
      tv_weight: weight of the optional total-variation term (0 = off, the paper).
      pooling: ``"avg"`` (the paper) or ``"max"``.
      preprocessing: the input convention of the weights in use.
    """

    content_layers: tuple[tuple[str, float], ...]
    style_layers: tuple[tuple[str, float], ...]
    content_weight: float
    style_weight: float
    tv_weight: float
    pooling: str
    preprocessing: Preprocessing

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer the objective reads, each once."""
        return tuple(dict.fromkeys(n for n, _ in self.content_layers + self.style_layers))


class Targets(NamedTuple):
    """What the generated image is compared with: P^l by content layer, A^l by style layer."""

    content: dict[str, Array]
    style: dict[str, Array]


def features(params: dict, image: Array, objective: Objective, layers: Sequence[str]) -> dict:
    """Responses of ``layers`` to RGB ``image`` ``(..., H, W, 3)`` in [0, 1]."""
    batched = image if image.ndim == 4 else image[None]
    x = to_network(batched, objective.preprocessing)
    out = extract_features(params, x, layers, objective.pooling)
    return out if image.ndim == 4 else {k: v[0] for k, v in out.items()}


def compute_targets(
    params: dict,
    content_image: Array,
    style_images: Sequence[Array],
    objective: Objective,
    style_blend: Sequence[float] | None = None,
) -> Targets:
    """P^l of the content photo and A^l of the style image(s), computed once.

    Several style images are blended by a weighted mean of their Gram matrices
    (equal weights unless ``style_blend`` is given). A style image of another size
    than the content (``style_scale``) has its Gram matrices rescaled by the ratio
    of positions M, so that eq. 4 compares like with like; at the same size (the
    paper) the factor is 1.
    """
    content_names = [n for n, _ in objective.content_layers]
    style_names = [n for n, _ in objective.style_layers]
    content = features(params, content_image, objective, content_names)
    if style_blend is None:
        style_blend = [1.0 / len(style_images)] * len(style_images)
    style: dict[str, Array] = {}
    height, width = content_image.shape[-3:-1]
    for image, b in zip(style_images, style_blend, strict=True):
        for name, F in features(params, image, objective, style_names).items():
            d = downsampling(name)
            positions = (height // d) * (width // d) / (F.shape[-3] * F.shape[-2])
            style[name] = style.get(name, 0.0) + b * positions * losses.gram_matrix(F)
    return Targets(content=content, style=style)


def loss_terms(image: Array, params: dict, targets: Targets, objective: Objective) -> dict:
    """Every term of eq. 7 for ``image``: total, content, style, tv, and each layer's part.

    Keys: ``total``, ``content``, ``style``, ``tv``, ``content/<layer>``,
    ``style/<layer>`` (the latter two unweighted: eq. 1 and eq. 4 as written).
    """
    F = features(params, image, objective, objective.layers)
    terms = {}
    for name, _ in objective.content_layers:
        terms[f"content/{name}"] = losses.content_loss(F[name], targets.content[name])
    for name, _ in objective.style_layers:
        terms[f"style/{name}"] = losses.style_layer_loss(F[name], targets.style[name])
    content = sum(w * terms[f"content/{n}"] for n, w in objective.content_layers)
    style = sum(w * terms[f"style/{n}"] for n, w in objective.style_layers)
    tv = losses.total_variation_loss(image) if objective.tv_weight else jnp.zeros(())
    total = losses.total_loss(
        content, style, objective.content_weight, objective.style_weight, tv, objective.tv_weight
    )
    return {"total": total, "content": content, "style": style, "tv": tv, **terms}


def total_objective(image: Array, params: dict, targets: Targets, objective: Objective) -> Array:
    """Eq. 7 for ``image``: the scalar that the optimiser minimises."""
    return loss_terms(image, params, targets, objective)["total"]
