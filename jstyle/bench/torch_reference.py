"""PyTorch twin of :mod:`jstyle.objective`, kept for benchmarks and parity tests only.

It computes exactly the objective of :func:`jstyle.objective.total_objective` --
the same VGG-19 parameters (jstyle's pytree, kernels converted HWIO -> OIHW),
the same preprocessing, layers, pooling (2x2, stride 2, floor), losses (eqs. 1,
4, 5, 7 and the optional squared total variation) in float32 -- written the way
one would write it for speed in eager PyTorch on CPU: weights are buffers (no
gradients), targets are computed once under ``torch.no_grad``, the network stops
at the deepest layer the objective reads, ReLUs run in place wherever the
pre-activation is not needed, and Gram matrices are one ``torch.mm`` on an
``(N, M)`` view of each response.

The product never imports this module; it needs the ``bench`` extra (torch).

Threads: nothing here calls ``torch.set_num_threads``. PyTorch's default
intra-op pool has one thread per physical core, so a benchmark gets all cores
unless its caller (or ``OMP_NUM_THREADS``) says otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as tnf

from jstyle.layers import CONV_CHANNELS, LAYERS, layer_index
from jstyle.objective import Objective

#: Memory format of the activations. channels_last is faster with oneDNN's convolutions:
#: one loss+gradient evaluation at 256x192 px on the real weights took 1.42 s against
#: 1.91 s in the default NCHW format (median of 5, torch 2.13 CPU, 2 cores).
CHANNELS_LAST = True

#: Most line-search evaluations per iteration (a zoom search's usual limit).
MAX_LINE_SEARCH = 20

_CONV, _RELU, _AVG, _MAX = range(4)


def _conv_weight(kernel: Any) -> torch.Tensor:
    """HWIO kernel (numpy or jax) -> OIHW float32 tensor."""
    return torch.tensor(np.ascontiguousarray(np.asarray(kernel, np.float32).transpose(3, 2, 0, 1)))


class TorchVGG19(torch.nn.Module):
    """VGG-19's feature layers, from a jstyle params pytree, returning named responses.

    Args:
      params: ``{"conv1_1": {"kernel": (3, 3, in, out), "bias": (out,)}, ...}``, numpy or jax.
      outputs: names of the responses to return (see :mod:`jstyle.layers`); the network
        computes nothing past the deepest of them.
      pooling: ``"avg"`` (the paper) or ``"max"``.
      channels_last: run the convolutions in ``torch.channels_last`` memory format.
    """

    def __init__(
        self,
        params: Mapping[str, Mapping[str, Any]],
        outputs: Sequence[str],
        pooling: str = "avg",
        *,
        channels_last: bool = CHANNELS_LAST,
    ) -> None:
        super().__init__()
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', not {pooling!r}")
        self.outputs = tuple(dict.fromkeys(outputs))
        self.pooling = pooling
        self.channels_last = channels_last
        stop = max((layer_index(name) for name in self.outputs), default=-1)
        wanted = set(self.outputs)
        plan: list[tuple[int, str, bool]] = []
        for name in LAYERS[: stop + 1]:
            if name.startswith("conv"):
                cin, cout = CONV_CHANNELS[name]
                weight = _conv_weight(params[name]["kernel"])
                bias = torch.tensor(np.asarray(params[name]["bias"], np.float32))
                if tuple(weight.shape) != (cout, cin, 3, 3) or tuple(bias.shape) != (cout,):
                    raise ValueError(f"{name}: kernel/bias have the wrong shape")
                if channels_last:
                    weight = weight.contiguous(memory_format=torch.channels_last)
                self.register_buffer(f"{name}_weight", weight)
                self.register_buffer(f"{name}_bias", bias)
                plan.append((_CONV, name, name in wanted))
            elif name.startswith("relu"):
                # In place unless the pre-activation (the conv's output) is itself returned:
                # conv2d's backward needs its input, not its output, and relu's needs its output.
                plan.append((_RELU, name, name in wanted))
            else:
                plan.append((_AVG if pooling == "avg" else _MAX, name, name in wanted))
        self._plan = tuple(plan)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Preprocessed images ``(B, 3, H, W)`` -> ``{name: (B, N, h, w)}``."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.contiguous(memory_format=fmt)
        buffers = self._buffers
        out: dict[str, torch.Tensor] = {}
        keep_pre = False  # whether the previous conv's output was returned
        for kind, name, keep in self._plan:
            if kind == _CONV:
                x = tnf.conv2d(x, buffers[f"{name}_weight"], buffers[f"{name}_bias"], padding=1)
                keep_pre = keep
            elif kind == _RELU:
                x = torch.relu(x) if keep_pre else torch.relu_(x)
            elif kind == _AVG:
                x = tnf.avg_pool2d(x, 2)
            else:
                x = tnf.max_pool2d(x, 2)
            if keep:
                out[name] = x
        return out


def gram(F: torch.Tensor) -> torch.Tensor:
    """Eq. 3 for one image's response ``(1, N, H, W)``: ``(N, N)``, not normalised."""
    f = F.reshape(F.shape[1], -1)  # a view in either memory format
    return torch.mm(f, f.t())


class TorchObjective(torch.nn.Module):
    """Eq. 7 of an RGB image ``(H, W, 3)`` in [0, 1], as :func:`jstyle.objective.loss_terms`.

    Call :meth:`set_targets` once before evaluating.

    Args:
      params: jstyle's VGG-19 params pytree (numpy or jax arrays).
      objective: the layers, weights, pooling and preprocessing
        (:class:`jstyle.objective.Objective`).
      channels_last: memory format of the activations (see :data:`CHANNELS_LAST`).
    """

    def __init__(
        self,
        params: Mapping[str, Mapping[str, Any]],
        objective: Objective,
        *,
        channels_last: bool = CHANNELS_LAST,
    ) -> None:
        super().__init__()
        self.objective = objective
        self.net = TorchVGG19(
            params, objective.layers, objective.pooling, channels_last=channels_last
        )
        # objective.precision: the network in bfloat16 (oneDNN's bf16 convolutions), the
        # losses in float32, as jstyle does it
        self._dtype = getattr(torch, objective.precision)
        self.net.to(self._dtype)
        prep = objective.preprocessing
        self._pixel_range = float(prep.pixel_range)
        self._bgr = prep.channel_order == "BGR"
        self._unit_std = all(s == 1.0 for s in prep.std)
        self.register_buffer("mean", torch.tensor(prep.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(prep.std, dtype=torch.float32).view(1, 3, 1, 1))
        self._content_layers = tuple(objective.content_layers)
        self._style_layers = tuple(objective.style_layers)
        self.content_targets: dict[str, torch.Tensor] = {}
        self.style_targets: dict[str, torch.Tensor] = {}

    def to_network(self, image: torch.Tensor) -> torch.Tensor:
        """RGB ``(H, W, 3)`` in [0, 1] -> the network's input ``(1, 3, H, W)``."""
        x = image.permute(2, 0, 1).unsqueeze(0) * self._pixel_range
        if self._bgr:
            x = x.flip(1)
        x = x - self.mean
        return x if self._unit_std else x / self.std

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Responses ``(1, N, h, w)`` of every layer the objective reads (float32)."""
        out = self.net(self.to_network(image).to(self._dtype))
        return out if self._dtype == torch.float32 else {k: v.float() for k, v in out.items()}

    @torch.no_grad()
    def set_targets(
        self,
        content: np.ndarray,
        styles: Sequence[np.ndarray],
        style_blend: Sequence[float] | None = None,
    ) -> None:
        """P^l of the content photo and A^l of the style images, as ``compute_targets``.

        Several style images are blended by a weighted mean of their Gram matrices
        (equal weights unless ``style_blend`` is given).
        """
        F = self.features(torch.as_tensor(np.asarray(content, np.float32)))
        self.content_targets = {n: F[n] for n, _ in self._content_layers}
        if style_blend is None:
            style_blend = [1.0 / len(styles)] * len(styles)
        grams: dict[str, torch.Tensor] = {}
        for image, b in zip(styles, style_blend, strict=True):
            F = self.features(torch.as_tensor(np.asarray(image, np.float32)))
            for name, _ in self._style_layers:
                g = b * gram(F[name])
                grams[name] = grams[name] + g if name in grams else g
        self.style_targets = grams

    def loss_terms(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every term of eq. 7, keyed as :func:`jstyle.objective.loss_terms`."""
        if not self.style_targets and not self.content_targets:
            raise RuntimeError("call set_targets() first")
        F = self.features(image)
        terms: dict[str, torch.Tensor] = {}
        for name, _ in self._content_layers:
            terms[f"content/{name}"] = 0.5 * torch.sum(
                torch.square(F[name] - self.content_targets[name])
            )
        for name, _ in self._style_layers:
            _, n, h, w = F[name].shape
            m = h * w
            G = gram(F[name])
            terms[f"style/{name}"] = torch.sum(torch.square(G - self.style_targets[name])) / (
                4.0 * n**2 * m**2
            )
        o = self.objective
        content = sum(w * terms[f"content/{n}"] for n, w in self._content_layers)
        style = sum(w * terms[f"style/{n}"] for n, w in self._style_layers)
        total = o.content_weight * content + o.style_weight * style
        if o.tv_weight:
            tv = total_variation(image)
            total = total + o.tv_weight * tv
        else:
            tv = torch.zeros((), dtype=image.dtype)  # adding 0 * 0 would not change total
        return {"total": total, "content": content, "style": style, "tv": tv, **terms}

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Eq. 7 for ``image`` ``(H, W, 3)``: the scalar the optimiser minimises."""
        return self.loss_terms(image)["total"]


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Sum of squared differences of neighbouring pixels of ``(H, W, C)``."""
    dy = image[1:, :, :] - image[:-1, :, :]
    dx = image[:, 1:, :] - image[:, :-1, :]
    return torch.sum(torch.square(dy)) + torch.sum(torch.square(dx))


def value_and_grad(objective: TorchObjective, image: np.ndarray) -> tuple[float, np.ndarray]:
    """One evaluation of eq. 7 and its gradient with respect to the ``(H, W, 3)`` image."""
    x = torch.tensor(np.asarray(image, np.float32), requires_grad=True)
    loss = objective(x)
    (grad,) = torch.autograd.grad(loss, x)
    return float(loss.detach()), grad.numpy()


def torch_lbfgs(
    objective: TorchObjective,
    x0: np.ndarray,
    iterations: int,
    memory: int = 20,
    line_search: str | None = "strong_wolfe",
    *,
    max_line_search: int = MAX_LINE_SEARCH,
    on_iteration=None,
) -> dict[str, Any]:
    """``iterations`` L-BFGS iterations of ``torch.optim.LBFGS`` from ``x0``.

    One ``step()`` per iteration with ``max_iter=1``, so the loss after every
    iteration is recorded, as jstyle records one per solver step. Two details of
    torch's L-BFGS matter here:

    * its default ``max_eval`` is ``max_iter * 5 // 4``, i.e. 1 for ``max_iter=1``,
      which leaves the strong-Wolfe search no evaluations at all; ``max_eval`` is
      set to ``1 + max_line_search``;
    * every ``step()`` starts by evaluating the closure at the current point,
      which the previous step's line search has already evaluated. The closure
      remembers the points evaluated since the last step (exact equality of the
      image) and replays their loss and gradient, so this costs no extra
      forward/backward pass: ``evaluations`` counts real ones only, as jstyle's
      solver reuses the line search's value and gradient.

    ``on_iteration(iteration, image, evaluations, seconds)``, if given, hears of every
    iteration (the image a numpy copy; its time is not counted in ``seconds``).

    Tolerances are zero, so the solver never stops early: it runs exactly
    ``iterations`` iterations (short of an exactly stationary point).

    Returns:
      ``image`` (the final RGB image, unclipped), ``history`` (total loss after each
      iteration), ``evaluations`` (loss+gradient evaluations computed), ``seconds``
      (wall time of the loop; targets must already be set), ``final_loss``.
    """
    x = torch.tensor(np.asarray(x0, np.float32), requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [x],
        lr=1,
        max_iter=1,
        max_eval=1 + max_line_search,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        history_size=memory,
        line_search_fn=line_search,
    )
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (x, loss, grad)
    evaluations = 0

    def lookup() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        for entry in reversed(seen):
            if torch.equal(entry[0], x):
                return entry
        return None

    def evaluate() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        nonlocal evaluations
        with torch.enable_grad():
            loss = objective(x)
            (grad,) = torch.autograd.grad(loss, x)
        evaluations += 1
        entry = (x.detach().clone(), loss.detach(), grad)
        seen.append(entry)
        return entry

    def closure() -> torch.Tensor:
        entry = lookup() or evaluate()
        x.grad = entry[2].clone()
        return entry[1]

    history: list[float] = []
    start, paused = time.perf_counter(), 0.0
    for i in range(iterations):
        optimizer.step(closure)
        with torch.no_grad():
            entry = lookup() or evaluate()
        seen[:] = [entry]  # the next step starts here
        history.append(float(entry[1]))
        if on_iteration is not None:
            t = time.perf_counter()
            on_iteration(i + 1, x.detach().numpy().copy(), evaluations, t - start - paused)
            paused += time.perf_counter() - t
    seconds = time.perf_counter() - start - paused
    return {
        "image": x.detach().numpy().copy(),
        "history": history,
        "evaluations": evaluations,
        "seconds": seconds,
        "final_loss": history[-1] if history else float("nan"),
    }
