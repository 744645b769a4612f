"""The style-transfer objective (eq. 7) of an image, wired from the network and the losses.

The optimised variable is the image itself: RGB in [0, 1], ``(H, W, 3)``, kept inside
that box by the optimisers (:mod:`jstyle.optimize`). Targets -- the content
photo's responses P^l and the style image's Gram matrices A^l -- are computed
once by :func:`compute_targets` and then passed in, so every function here is a
pure function of explicit arrays and jit-compiles without baking weights or
targets into the program as constants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jstyle import losses, style_losses, tiling
from jstyle.layers import downsampling, layer_index
from jstyle.options import STYLE_LOSSES
from jstyle.preprocessing import Preprocessing, to_network

__all__ = ["Objective", "Targets", "network_params", "features", "whole_features",
    "layer_masks",
    "compute_targets", "loss_terms", "total_objective", "objective_and_terms",
    "gradient_norms", "balanced_content_weight"]

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
      remat: rematerialise the network's blocks in the backward pass (``jax.checkpoint``):
        the same loss and gradient, about a fifth more time; measured on CPU it does not
        lower the peak memory of the paper's objective (see :mod:`jstyle.memory`).
      style_losses: ``((name, weight), ...)``: the style loss(es) of eq. 5 at every style
        layer, each times its weight (the paper: ``(("gram", 1.0),)``, eq. 4; the others:
        :mod:`jstyle.style_losses`).
      seed: draws what a style loss fixes for a run (projections, sampled positions).
      tile: exact tiled evaluation (:mod:`jstyle.tiling`): the network runs on crops of
        tiles at most this many pixels a side plus their halos, so that its memory is one
        crop's whatever the image's size; the loss and gradient are the whole image's. 0
        (the default): the whole image at once. Only eq. 4's Gram matrices (and eq. 1) are
        sums over positions, so the other style losses take no tiles.
      precision: ``"float32"`` (the paper) or ``"bfloat16"``: the network (its weights,
        convolutions, poolings and responses) in bfloat16, with float32 accumulation in
        the convolutions; the losses, the Gram matrices, the image and its gradient, and
        all the optimiser sees stay float32. On the CPU the convolutions are faster only
        through oneDNN (:mod:`jstyle.onednn`).
      convolutions: ``"xla"`` (XLA's direct convolutions), or ``"winograd"``: the float32
        network's convolutions by Winograd's F(4x4, 3x3) through oneDNN
        (:func:`jstyle.vgg.winograd_conv3x3`), the same objective with other rounding
        (responses within a few parts in a million); :mod:`jstyle.precision` decides it.
    """

    content_layers: tuple[tuple[str, float], ...]
    style_layers: tuple[tuple[str, float], ...]
    content_weight: float
    style_weight: float
    tv_weight: float
    pooling: str
    preprocessing: Preprocessing
    remat: bool = False
    precision: str = "float32"
    convolutions: str = "xla"
    style_losses: tuple[tuple[str, float], ...] = (("gram", 1.0),)
    seed: int = 0
    tile: int = 0

    def plan(self, height: int, width: int) -> tiling.Plan | None:
        """The tiles of a ``height`` x ``width`` image under :attr:`tile`; None when the
        image is evaluated whole (no tiles, or one crop would be all of it)."""
        plan = tiling.plan(height, width, self.tile, self.layers)
        if plan is not None and not all(name == "gram" for name, _ in self.style_losses):
            raise ValueError("tiled evaluation needs style losses that are sums over "
                             "positions: style_loss gram")
        return plan

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer the objective reads, each once."""
        return tuple(dict.fromkeys(n for n, _ in self.content_layers + self.style_layers))

    def weights(self) -> dict[str, float]:
        """Eq. 7's weights by name: ``alpha``, ``beta``, ``tv``, ``content/<layer>`` and
        ``style/<layer>`` (w_l of eq. 5). The engine puts them into the targets as arrays
        (:class:`Targets`), so that they are data to the compiled program, not constants."""
        return {"alpha": self.content_weight, "beta": self.style_weight, "tv": self.tv_weight,
                **{f"content/{n}": w for n, w in self.content_layers},
                **{f"style/{n}": w for n, w in self.style_layers},
                **{f"loss/{n}": w for n, w in self.style_losses}}

    def program(self) -> Objective:
        """This objective with every weight set to 1 (the total-variation weight to 1 or
        0): what a compiled program depends on when the weights come in the targets. Two
        objectives that differ only in their weights share one program."""
        return dataclasses.replace(
            self, content_layers=tuple((n, 1.0) for n, _ in self.content_layers),
            style_layers=tuple((n, 1.0) for n, _ in self.style_layers), content_weight=1.0,
            style_weight=1.0, tv_weight=1.0 if self.tv_weight else 0.0,
            style_losses=tuple((n, 1.0) for n, _ in self.style_losses))

    @property
    def gram(self) -> bool:
        """Whether eq. 4's Gram matrices are among the style losses."""
        return any(name == "gram" for name, _ in self.style_losses)


class Targets(NamedTuple):
    """What the generated image is compared with: P^l by content layer, A^l by style layer.

    With spatial control (``masks``), ``style[l]`` holds one target per region
    ``(R, N, N)`` and ``masks[l]`` the regions' masks at layer l's resolution ``(R, h, w)``.
    ``statistics``: the targets of the style losses other than the Gram matrices'
    (:mod:`jstyle.style_losses`), by loss and layer (``style`` is then empty unless
    ``gram`` is among them too).
    ``weights``: eq. 7's weights (:meth:`Objective.weights`) as arrays, read by
    :func:`loss_terms` in place of the objective's own, so that one compiled program serves
    every weight setting of a layer set (:meth:`Objective.program`; the engine sets them);
    None (what :func:`compute_targets` returns): the objective's weights.
    """

    content: dict[str, Array]
    style: dict[str, Array]
    masks: dict[str, Array] | None = None
    weights: dict[str, Array] | None = None  # Objective.weights() as arrays; None: the objective's
    statistics: dict[str, dict[str, Any]] | None = None  # by style loss but gram, by layer


def network_params(params: dict, objective: Objective) -> dict:
    """The network's weights in the objective's precision: a cast for ``bfloat16`` (done
    once by the engine, so that no evaluation repeats it; under jit a no-op after that)."""
    if objective.precision == "float32":
        return params
    dtype = jnp.dtype(objective.precision)
    return jax.tree.map(lambda a: a if a.dtype == dtype else a.astype(dtype), params)


def features(params: dict, image: Array, objective: Objective, layers: Sequence[str]) -> dict:
    """Responses of ``layers`` to RGB ``image`` ``(..., H, W, 3)`` in [0, 1], in float32
    whatever the network's precision (:attr:`Objective.precision`). The network (and Flax)
    is imported here, when a program is traced: a run whose programs are all kept
    (:mod:`jstyle.programs`) starts without it."""
    from jstyle.vgg import extract_features

    batched = image if image.ndim == 4 else image[None]
    x = to_network(batched, objective.preprocessing)
    if objective.precision != "float32":
        x = x.astype(objective.precision)
    out = extract_features(network_params(params, objective), x, layers, objective.pooling,
                           objective.remat, objective.convolutions)
    out = {k: v.astype(jnp.float32) for k, v in out.items()}
    return out if image.ndim == 4 else {k: v[0] for k, v in out.items()}


def whole_features(params: dict, image: Array, objective: Objective,
                   layers: Sequence[str]) -> dict:
    """:func:`features` of one image ``(H, W, 3)``, computed tile by tile under the
    objective's tiles (:meth:`Objective.plan`) and put together: the same responses, with
    the network's memory one crop's. For targets (not differentiated)."""
    plan = objective.plan(*image.shape[-3:-1])
    if plan is None or not layers:
        return features(params, image, objective, layers)
    height, width = image.shape[-3:-1]
    factors = {name: downsampling(name) for name in layers}
    shapes = jax.eval_shape(lambda x: features(params, x, objective, layers),
                            jax.ShapeDtypeStruct((*plan.crop, 3), image.dtype))
    whole = {name: jnp.zeros((tiling.layer_size(height, d), tiling.layer_size(width, d),
                              shapes[name].shape[-1]), jnp.float32)
             for name, d in factors.items()}

    def put(out, tile):
        F = features(params, tiling.crop(image, tile, plan.crop), objective, layers)
        for name, d in factors.items():
            core = tiling.core_mask(tile, plan.crop, d)[..., None] > 0
            kept = jnp.where(core, F[name], tiling.at_layer(out[name], tile, plan.crop, d))
            out[name] = jax.lax.dynamic_update_slice(out[name], kept,
                                                     (tile[0] // d, tile[1] // d, 0))
        return out, None

    return jax.lax.scan(put, whole, jnp.asarray(plan.tiles))[0]


def _gram_matrices(params: dict, image: Array, objective: Objective,
                   layers: Sequence[str]) -> dict:
    """Eq. 3's G^l of one image at ``layers`` (unnormalised), tile by tile under the
    objective's tiles, so that a large style image never has all its responses at once."""
    plan = objective.plan(*image.shape[-3:-1])
    if plan is None:
        return {name: losses.gram_matrix(F)
                for name, F in features(params, image, objective, layers).items()}

    def one(tile, image, params):
        F = features(params, tiling.crop(image, tile, plan.crop), objective, layers)
        return {name: losses.gram_matrix(
            F[name] * tiling.core_mask(tile, plan.crop, downsampling(name))[..., None])
            for name in layers}

    return tiling.scan(one, plan, image, params)


def layer_masks(masks: Array, factor: int) -> Array:
    """Masks ``(R, H, W)`` at the resolution of a layer ``factor`` times smaller: the mean of
    each ``factor`` x ``factor`` block, an odd last row or column dropped as the network's
    pooling drops it (Gatys et al. 2017 propagate guidance channels the same way)."""
    r, height, width = masks.shape
    h, w = height // factor, width // factor
    blocks = masks[:, : h * factor, : w * factor].reshape(r, h, factor, w, factor)
    return blocks.mean(axis=(2, 4))


def compute_targets(
    params: dict,
    content_image: Array,
    style_images: Sequence[Array],
    objective: Objective,
    style_blend: Sequence[float] | None = None,
    masks: Array | None = None,
    draw: Array | int = 0,
) -> Targets:
    """P^l of the content photo and A^l of the style image(s), computed once.

    Several style images are blended by a weighted mean of their Gram matrices
    (equal weights unless ``style_blend`` is given). A style image of another size
    than the content (``style_scale``) has its Gram matrices rescaled by the ratio
    of positions M, so that eq. 4 compares like with like; at the same size (the
    paper) the factor is 1.

    Spatial control (Gatys et al. 2017, sec. 4.1): with ``masks`` ``(R, H, W)`` at the
    content's size, one per style image, style image r is the target of region r alone:
    its Gram matrix is rescaled to the region's area at each layer (M_r / M_style), and
    the masks are kept at each style layer's resolution for
    :func:`jstyle.losses.guided_style_layer_loss`. ``style_blend`` does not apply.

    The style losses other than the Gram matrices' (:attr:`Objective.style_losses`) get
    their targets from :mod:`jstyle.style_losses`, layer by layer, with keys drawn from
    :attr:`Objective.seed`; they take no masks. ``draw`` (an int, traced or not): which
    draw of the seed's, 0 the run's first; a run that draws its projections and samples
    afresh (``redraw_every``) makes its targets again with the next.
    """
    content_names = [n for n, _ in objective.content_layers]
    style_names = [n for n, _ in objective.style_layers]
    content = whole_features(params, content_image, objective, content_names)
    height, width = content_image.shape[-3:-1]
    if style_blend is None:
        style_blend = [1.0 / len(style_images)] * len(style_images)
    statistics = None
    others = [name for name, _ in objective.style_losses if name != "gram"]
    if others:
        responses = [features(params, image, objective, style_names) for image in style_images]
        if masks is not None:
            raise ValueError(f"style losses {others} have no per-region form; masks need "
                             "style_loss: gram")
        seed = jax.random.PRNGKey(objective.seed)
        # draw 0 is the seed's own key, so a run that never redraws keeps its targets
        seed = jnp.where(jnp.asarray(draw) == 0, seed, jax.random.fold_in(seed, draw))
        statistics = {}
        for name in others:
            statistics[name] = {}
            for layer in style_names:
                d = downsampling(layer)
                key = jax.random.fold_in(jax.random.fold_in(seed, layer_index(layer)),
                                         STYLE_LOSSES.index(name))
                statistics[name][layer] = style_losses.targets(
                    name, [r[layer] for r in responses], style_blend, key,
                    (height // d, width // d))
    grams = []
    for image in style_images if objective.gram else []:
        scaled = {}
        for name, G in _gram_matrices(params, image, objective, style_names).items():
            d = downsampling(name)
            positions = ((height // d) * (width // d)
                         / (tiling.layer_size(image.shape[-3], d)
                            * tiling.layer_size(image.shape[-2], d)))
            scaled[name] = positions * G
        grams.append(scaled)
    if masks is not None:
        if len(masks) != len(style_images):
            raise ValueError(f"{len(masks)} masks for {len(style_images)} style images")
        by_layer = {name: layer_masks(jnp.asarray(masks), downsampling(name))
                    for name in style_names}
        area = {name: jnp.sum(m, axis=(-2, -1)) / (m.shape[-2] * m.shape[-1])
                for name, m in by_layer.items()}  # of the whole image, region by region
        style = {name: jnp.stack([g[name] for g in grams]) * area[name][:, None, None]
                 for name in style_names}
        return Targets(content=content, style=style, masks=by_layer)
    style = {name: sum(b * g[name] for g, b in zip(grams, style_blend, strict=True))
             for name in style_names} if grams else {}
    return Targets(content=content, style=style, statistics=statistics)


def loss_terms(image: Array, params: dict, targets: Targets, objective: Objective) -> dict:
    """Every term of eq. 7 for ``image``: total, content, style, tv, and each layer's part.
    The weights are the targets' (:class:`Targets`), else the objective's.

    Keys: ``total``, ``content``, ``style``, ``tv``, ``content/<layer>``,
    ``style/<layer>`` (the latter two not weighted by w_l: eq. 1 and eq. 4 as written, or
    the style losses' sum, each times its weight).

    Under the objective's tiles (:attr:`Objective.tile`) the same terms come from sums
    over the tiles (:func:`_tiled_terms`).
    """
    plan = objective.plan(*image.shape[-3:-1]) if image.ndim == 3 else None
    w = objective.weights() if targets.weights is None else targets.weights
    if plan is not None:
        return _totals(image, _tiled_terms(image, params, targets, objective, plan, w), w,
                       objective)
    terms = {}
    F = features(params, image, objective, objective.layers)
    for name, _ in objective.content_layers:
        terms[f"content/{name}"] = losses.content_loss(F[name], targets.content[name])
    for name, _ in objective.style_layers:
        term = 0.0
        for loss, _ in objective.style_losses:
            if loss != "gram":
                E = style_losses.layer_loss(loss, F[name], targets.statistics[loss][name])
            elif targets.masks is None:
                E = losses.style_layer_loss(F[name], targets.style[name])
            else:
                E = losses.guided_style_layer_loss(F[name], targets.style[name],
                                                   targets.masks[name])
            term = term + w[f"loss/{loss}"] * E
        terms[f"style/{name}"] = term
    return _totals(image, terms, w, objective)


def _tiled_terms(image: Array, params: dict, targets: Targets, objective: Objective,
                 plan: tiling.Plan, w: dict) -> dict:
    """``content/<layer>`` and ``style/<layer>`` of :func:`loss_terms` from sums over
    ``plan``'s tiles: eq. 1's squared error and eq. 3's G^l (guided, with masks) summed
    over each tile's core, then eq. 4 (or its guided form) of the sums."""
    height, width = image.shape[-3:-1]

    def one(tile, image, params, targets):
        F = features(params, tiling.crop(image, tile, plan.crop), objective, objective.layers)
        sums = {}
        for name, _ in objective.content_layers:
            d = downsampling(name)
            core = tiling.core_mask(tile, plan.crop, d)[..., None]
            P = tiling.at_layer(targets.content[name], tile, plan.crop, d)
            sums[f"content/{name}"] = 0.5 * jnp.sum(core * jnp.square(F[name] - P))
        for name, _ in objective.style_layers:
            d = downsampling(name)
            core = tiling.core_mask(tile, plan.crop, d)
            if targets.masks is None:
                G = losses.gram_matrix(F[name] * core[..., None])
            else:
                T = tiling.at_layer(targets.masks[name], tile, plan.crop, d,
                                    channels_last=False)
                G = losses.guided_gram_matrix(F[name], T * core)
            sums[f"gram/{name}"] = G
        return sums

    sums = tiling.scan(one, plan, image, params, targets._replace(weights=None))
    terms = {k: v for k, v in sums.items() if k.startswith("content/")}
    for name, _ in objective.style_layers:
        d = downsampling(name)
        positions = tiling.layer_size(height, d) * tiling.layer_size(width, d)
        G = sums[f"gram/{name}"]
        if targets.masks is None:
            E = losses.gram_layer_loss(G, targets.style[name], positions)
        else:
            area = jnp.sum(targets.masks[name], axis=(-2, -1))
            E = losses.guided_gram_layer_loss(G, targets.style[name], area, positions)
        terms[f"style/{name}"] = w["loss/gram"] * E
    return terms


def _totals(image: Array, terms: dict, w: dict, objective: Objective) -> dict:
    """Eqs. 5 and 7 (and the optional total variation) from each layer's term."""
    content = sum(w[f"content/{n}"] * terms[f"content/{n}"] for n, _ in objective.content_layers)
    style = sum(w[f"style/{n}"] * terms[f"style/{n}"] for n, _ in objective.style_layers)
    tv = losses.total_variation_loss(image) if objective.tv_weight else jnp.zeros(())
    total = losses.total_loss(content, style, w["alpha"], w["beta"], tv, w["tv"])
    return {"total": total, "content": content, "style": style, "tv": tv, **terms}


def total_objective(image: Array, params: dict, targets: Targets, objective: Objective) -> Array:
    """Eq. 7 for ``image``: the scalar that the optimiser minimises."""
    return loss_terms(image, params, targets, objective)["total"]


def objective_and_terms(image: Array, params: dict, targets: Targets,
                        objective: Objective) -> tuple[Array, dict]:
    """Eq. 7 for ``image`` and every term of it (:func:`loss_terms`), from one pass of the
    network: the ``(loss, aux)`` pair the optimisers take, so that a run reports the terms of
    the points its optimiser evaluated without evaluating them again."""
    terms = loss_terms(image, params, targets, objective)
    return terms["total"], terms


def gradient_norms(image: Array, params: dict, targets: Targets,
                   objective: Objective) -> tuple[Array, Array]:
    """||grad L_content|| and ||grad L_style|| at ``image``: the unweighted terms of eq. 7
    (eq. 1 and eq. 5 with their layer weights, before alpha and beta), from one forward
    pass and two backward passes."""
    def both(x):
        terms = loss_terms(x, params, targets, objective)
        return terms["content"], terms["style"]

    _, pull = jax.vjp(both, image)
    one, zero = jnp.ones(()), jnp.zeros(())
    (content,), (style,) = pull((one, zero)), pull((zero, one))
    return jnp.linalg.norm(content), jnp.linalg.norm(style)


def balanced_content_weight(image: Array, params: dict, targets: Targets,
                            objective: Objective, ratio: float) -> Array:
    """The alpha at which the content term pulls ``ratio`` times as hard as the style term
    at ``image``: alpha ||grad L_content|| = ratio * beta ||grad L_style||, beta the
    objective's style weight.

    Eq. 7's balance alpha/beta means a different look at every image size (eq. 1 grows with
    the positions, eq. 4 does not) and under every style loss (each has its own scale);
    the ratio of the two gradients' norms is what the optimiser feels, so fixing it fixes
    the balance (``balance: auto``). Not in the paper, which gives alpha/beta per figure.
    """
    content, style = gradient_norms(image, params, targets, objective)
    return ratio * objective.style_weight * style / jnp.maximum(content, 1e-30)
