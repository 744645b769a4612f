"""How each style loss of :mod:`jstyle.losses` other than the Gram matrix enters eq. 5.

Eq. 5 sums, over the style layers, w_l times a layer's style loss; Gatys et al. 2016 use
eq. 4, the Gram matrices (:mod:`jstyle.objective` keeps that path, with its masks and
its rescaling for ``style_scale``). ``style_loss`` may name instead, or beside it, the
statistics the field matched after 2016. Each has here:

- a target made once from the style images' responses at the layer (several style images
  are mixed where the statistic allows it, by the blend weights);
- its layer loss of the generated image's responses.

Drawn once per run from the run's seed (so that every evaluation of one run sees the
same objective, as L-BFGS needs): the sliced Wasserstein loss's projections, and the
positions the MRF and relaxed-EMD losses sample where a layer has more than
:data:`SAMPLES` (their cost grows with the product of the two counts).

The losses are distributions' distances, not sums over positions, so none of them
depends on the image's size the way eq. 4 does; the style image's size (``style_scale``)
needs no rescaling either.

References:
  See :mod:`jstyle.losses`, one paper per loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jstyle import losses
from jstyle.options import BLENDED_STYLE_LOSSES, STYLE_LOSSES

__all__ = ["SAMPLES", "StyleTerm", "TERMS", "targets", "layer_loss"]

Array = jax.Array

#: At most this many style patches (MRF) or positions on each side (relaxed EMD) per
#: layer, drawn once per run: relu1_1 at 512 px has 196608 positions, and both losses
#: compare every pair.
SAMPLES = 4096


class StyleTerm(NamedTuple):
    """``target(features, blend, key, shape)``: from the style images' responses at one
    layer (a list of ``(H, W, N)``), the blend weights, a key and the generated image's
    ``(h, w)`` there; ``loss(F, target)``: one value per image."""

    target: Callable[[Sequence[Array], Sequence[float], Array, tuple[int, int]], Any]
    loss: Callable[[Array, Any], Array]


def _one(name: str, features: Sequence[Array]) -> Array:
    if len(features) != 1:  # the config refuses it first, in one line
        raise ValueError(f"style_loss {name} matches one style image, got {len(features)}")
    return features[0]


def _mean_std(features, blend, key, shape):
    """The mixture's per-channel mean and standard deviation (its second moment is the
    blend of each image's, so one image gives :func:`jstyle.losses.mean_std_target`)."""
    parts = [losses.mean_std_target(F) for F in features]
    mean = sum(b * p.mean for b, p in zip(blend, parts, strict=True))
    second = sum(b * (p.mean ** 2 + p.std ** 2) for b, p in zip(blend, parts, strict=True))
    return losses.MeanStd(mean, jnp.sqrt(jnp.maximum(second - mean ** 2, 0.0)))


def _wasserstein(features, blend, key, shape):
    """The Gaussian of the mixture of the style images' responses: its mean and covariance
    are the mixture's (exact), and the square root is taken of that covariance."""
    if len(features) == 1:
        return losses.wasserstein_target(features[0])
    parts = [losses.wasserstein_target(F) for F in features]
    mean = sum(b * p.mean for b, p in zip(blend, parts, strict=True))
    second = sum(b * (p.cov + p.mean[:, None] * p.mean[None, :])
                 for b, p in zip(blend, parts, strict=True))
    cov = second - mean[:, None] * mean[None, :]
    return losses.Gaussian(mean, cov, losses.psd_sqrtm(cov))


def _sliced(features, blend, key, shape):
    F = _one("sliced_wasserstein", features)
    n = F.shape[-1]
    return losses.sliced_wasserstein_fixed_target(F, losses.random_directions(key, n, n))


def _histogram(features, blend, key, shape):
    return losses.histogram_target(_one("histogram", features))


def _sample(key: Array, count: int) -> Array | None:
    """At most :data:`SAMPLES` of ``count`` indices, drawn once (None: all of them)."""
    if count <= SAMPLES:
        return None
    return jnp.sort(jax.random.choice(key, count, (SAMPLES,), replace=False))


def _mrf(features, blend, key, shape):
    target = losses.mrf_target(_one("mrf", features))
    keep = _sample(key, target.patches.shape[-2])
    if keep is None:
        return target
    return losses.MRFTarget(jnp.take(target.patches, keep, axis=-2),
                            jnp.take(target.norms, keep, axis=-1))


class _REMD(NamedTuple):
    style: losses.REMDTarget
    positions: Array | None  # of the generated image's, drawn once


def _remd(features, blend, key, shape) -> _REMD:
    F = _one("remd", features)
    style_key, image_key = jax.random.split(key)
    h, w = F.shape[-3:-1]
    target = losses.remd_target(F, _sample(style_key, h * w))
    return _REMD(target, _sample(image_key, shape[0] * shape[1]))


def _remd_loss(F: Array, target: _REMD) -> Array:
    """STROTSS's style term, l_r + l_m (Kolkin et al. 2019, eqs. 4-5), at the sampled
    positions."""
    return (losses.remd_layer_loss(F, target.style, positions=target.positions)
            + losses.remd_moment_loss(F, target.style, positions=target.positions))


#: The loss of each ``style_loss`` name but ``gram`` (:mod:`jstyle.objective`'s own).
TERMS: dict[str, StyleTerm] = {
    "mean_std": StyleTerm(_mean_std, losses.mean_std_layer_loss),
    "wasserstein": StyleTerm(_wasserstein, losses.wasserstein_layer_loss),
    "sliced_wasserstein": StyleTerm(_sliced, losses.sliced_wasserstein_fixed_layer_loss),
    "histogram": StyleTerm(_histogram, losses.histogram_layer_loss),
    "mrf": StyleTerm(_mrf, losses.mrf_layer_loss),
    "remd": StyleTerm(_remd, _remd_loss),
}
assert set(TERMS) | {"gram"} == set(STYLE_LOSSES)
assert {"gram", *BLENDED_STYLE_LOSSES} <= set(STYLE_LOSSES)


def targets(name: str, features: Sequence[Array], blend: Sequence[float], key: Array,
            image_shape: tuple[int, ...]) -> Any:
    """Loss ``name``'s target at one layer: from the style images' responses there
    ``features`` (a list of ``(H, W, N)``), blended by ``blend``, with ``key`` for what it
    draws once; ``image_shape`` ``(h, w)``: the generated image's responses' size there."""
    return TERMS[name].target(features, blend, key, image_shape)


def layer_loss(name: str, F: Array, target: Any) -> Array:
    """Loss ``name`` of the generated image's responses ``F`` ``(..., h, w, N)``."""
    return TERMS[name].loss(F, target)
