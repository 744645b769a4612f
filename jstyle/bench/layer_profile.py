"""``python -m jstyle.bench layers``: where one evaluation's time goes, layer by layer,
jstyle (JAX/XLA) against the PyTorch reference.

One loss-and-gradient evaluation of the paper's objective (eqs. 1-7) runs VGG-19 up to
the deepest layer the loss reads (conv5_1 for the paper's layers) forward, then back to
the image. Every piece is timed on its own, at the resolution and channel count it has
in that evaluation, as a compiled program (JAX) or an eager call (PyTorch), median of
``repeats`` after warm-up, each framework in a fresh process:

- ``conv`` forward: the 3x3 convolution, bias and ReLU of each layer (eq. 1's F^l);
- ``conv`` input gradient: the ReLU's mask and the transposed convolution back to the
  layer's input (no gradient of the weights is computed, in either framework);
- ``pool``: 2x2 average pooling forward and its gradient;
- ``gram``: eq. 3's Gram matrix of each style layer forward and its gradient (eq. 6);
- ``loss``: eq. 4's squared difference to the painting's Gram matrix, and eq. 1's to the
  photo's responses, each with its gradient.

The sum of the pieces is printed beside one whole evaluation (same process), so what is
not a layer (XLA's fusions across layers, PyTorch's autograd bookkeeping) shows as the
difference. The table's ratio column says where XLA:CPU loses and by how much.

References:
  Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks",
  CVPR 2016 (eqs. 1-7).
  Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
  Recognition", ICLR 2015 (VGG-19's layers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jstyle.layers import CONV_CHANNELS, LAYERS, layer_index

#: The pieces' kinds, in the table's order of columns.
KINDS = ("forward", "gradient")


def pieces(height: int, width: int, content_layers: tuple[str, ...],
           style_layers: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every piece of one evaluation: ``{"name", "op", "h", "w", "cin", "cout"}``, in network
    order, up to the deepest layer the loss reads (``content_layers`` and ``style_layers``
    are layer names)."""
    stop = max(layer_index(n) for n in (*content_layers, *style_layers))
    out: list[dict[str, Any]] = []
    h, w, channels = height, width, 3
    for name in LAYERS[: stop + 1]:
        if name.startswith("conv"):
            cin, cout = CONV_CHANNELS[name]
            out.append({"name": name, "op": "conv", "h": h, "w": w, "cin": cin, "cout": cout})
            channels = cout
        elif name.startswith("pool"):
            out.append({"name": name, "op": "pool", "h": h, "w": w, "cin": channels,
                        "cout": channels})
            h, w = h // 2, w // 2
        if name.startswith("relu"):  # the losses read the ReLUs' responses
            conv = "conv" + name[4:]
            for role, layers in (("gram", style_layers), ("content", content_layers)):
                if name in layers or conv in layers:
                    out.append({"name": f"{role} {name}", "op": role, "h": h, "w": w,
                                "cin": channels, "cout": channels})
    return out


def _median(fn, repeats: int) -> float:
    from jstyle.bench.worker import _median_timed

    return _median_timed(fn, repeats, 2)[0]


# --- in the worker process --------------------------------------------------------------

def layers_jax(spec: dict) -> dict:
    """Each piece's forward and gradient time in JAX (jstyle's own functions; the convolutions
    as a run computes them here: by Winograd where the CPU has it, else XLA's)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jstyle.bench.worker import _problem
    from jstyle.losses import content_loss, gram_matrix
    from jstyle.objective import compute_targets, total_objective
    from jstyle.vgg import CONVOLUTIONS

    weights, objective, content, style, noise = _problem(spec["height"], spec["width"],
                                                         winograd=spec.get("winograd", True))
    conv3x3 = CONVOLUTIONS[objective.convolutions]  # as a run computes them here
    params, repeats = weights.params, spec["repeats"]
    rng = np.random.default_rng(0)
    times: list[dict[str, Any]] = []

    def timed(fn, *args):
        fn = jax.jit(fn)
        args = [jax.device_put(a) for a in args]
        return _median(lambda: jax.block_until_ready(fn(*args)), repeats)

    for piece in pieces(spec["height"], spec["width"], *_names(objective)):
        h, w, cin, cout = piece["h"], piece["w"], piece["cin"], piece["cout"]
        x = rng.random((1, h, w, cin), dtype=np.float32)
        g = rng.standard_normal((1, h, w, cout), dtype=np.float32)
        if piece["op"] == "conv":
            k = jnp.asarray(params[piece["name"]]["kernel"])
            b = jnp.asarray(params[piece["name"]]["bias"])
            y = np.asarray(jax.nn.relu(conv3x3(jnp.asarray(x), k) + b))

            def backward(x, y, g, k=k):
                masked = jnp.where(y > 0, g, 0.0)
                return jax.vjp(lambda x: conv3x3(x, k), x)[1](masked)[0]

            forward = timed(lambda x, k=k, b=b: jax.nn.relu(conv3x3(x, k) + b), x)
            gradient = timed(backward, x, y, g)
        elif piece["op"] == "pool":
            def pool(x):  # as jstyle.vgg pools
                return nn.avg_pool(x, (2, 2), strides=(2, 2))

            g = g[:, : h // 2, : w // 2]
            forward = timed(pool, x)
            gradient = timed(lambda x, g: jax.vjp(pool, x)[1](g)[0], x, g)
        elif piece["op"] == "gram":
            dG = rng.standard_normal((1, cin, cin), dtype=np.float32)
            forward = timed(gram_matrix, x)
            gradient = timed(lambda x, dG: jax.vjp(gram_matrix, x)[1](dG)[0], x, dG)
        else:  # content: eq. 1 and its gradient F - P
            p = rng.random(x.shape, dtype=np.float32)

            def eq1(x, p):
                return jnp.sum(content_loss(x, p))

            forward = timed(eq1, x, p)
            gradient = timed(jax.grad(eq1), x, p)
        times.append({**piece, "forward": forward, "gradient": gradient})
    targets = compute_targets(params, content, [style], objective)
    step = jax.jit(jax.value_and_grad(total_objective), static_argnums=3)
    image = jax.device_put(noise)
    whole = _median(lambda: jax.block_until_ready(step(image, params, targets, objective)),
                    repeats)
    # What any compiled call costs, however small: the floor of the small pieces' times.
    floor = timed(lambda v: v + 1.0, np.zeros((), np.float32))
    return {"pieces": times, "evaluation_s": whole, "call_s": floor,
            "device": str(jax.devices()[0])}


def layers_torch(spec: dict) -> dict:
    """Each piece's forward and gradient time in PyTorch eager (the reference's calls)."""
    import numpy as np
    import torch
    import torch.nn.functional as tnf

    from jstyle.bench.torch_reference import CHANNELS_LAST, _conv_weight, gram
    from jstyle.bench.worker import _problem, _torch_objective

    weights, objective, *_ = _problem(spec["height"], spec["width"])
    params, repeats = weights.params, spec["repeats"]
    rng = np.random.default_rng(0)
    fmt = torch.channels_last if CHANNELS_LAST else torch.contiguous_format
    times: list[dict[str, Any]] = []

    def tensor(shape):
        return torch.from_numpy(rng.random(shape, dtype=np.float32)).contiguous(
            memory_format=fmt)

    with torch.no_grad():
        for piece in pieces(spec["height"], spec["width"], *_names(objective)):
            h, w, cin, cout = piece["h"], piece["w"], piece["cin"], piece["cout"]
            x = tensor((1, cin, h, w))
            g = tensor((1, cout, h, w)) - 0.5
            if piece["op"] == "conv":
                k = _conv_weight(params[piece["name"]]["kernel"]).contiguous(memory_format=fmt)
                b = torch.from_numpy(np.asarray(params[piece["name"]]["bias"], np.float32))
                y = torch.relu(tnf.conv2d(x, k, b, padding=1))

                def backward(x=x, y=y, g=g, k=k):
                    masked = torch.where(y > 0, g, 0.0)
                    return torch.ops.aten.convolution_backward(
                        masked, x, k, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                        [True, False, False])[0]

                forward = _median(lambda x=x, k=k, b=b: torch.relu(tnf.conv2d(x, k, b,
                                                                            padding=1)), repeats)
                gradient = _median(backward, repeats)
            elif piece["op"] == "pool":
                gp = g[:, :, : h // 2, : w // 2].contiguous(memory_format=fmt)
                forward = _median(lambda x=x: tnf.avg_pool2d(x, 2), repeats)
                gradient = _median(lambda x=x, gp=gp: torch.ops.aten.avg_pool2d_backward(
                    gp, x, [2, 2], [2, 2], [0, 0], False, True, None), repeats)
            elif piece["op"] == "gram":
                f = x.reshape(cin, h * w)  # the view the reference's gram multiplies: (N, M)
                dG = torch.from_numpy(rng.standard_normal((cin, cin), dtype=np.float32))
                forward = _median(lambda x=x: gram(x), repeats)
                gradient = _median(lambda f=f, dG=dG: (dG + dG.T) @ f, repeats)
            else:
                p = tensor(x.shape)
                forward = _median(lambda x=x, p=p: 0.5 * torch.sum(torch.square(x - p)),
                                  repeats)
                gradient = _median(lambda x=x, p=p: x - p, repeats)
            times.append({**piece, "forward": forward, "gradient": gradient})
    _, module, noise = _torch_objective(spec)
    image = torch.tensor(noise, requires_grad=True)

    def evaluation():
        return torch.autograd.grad(module(image), image)

    whole = _median(evaluation, repeats)
    return {"pieces": times, "evaluation_s": whole, "threads": torch.get_num_threads()}


# --- in the harness -------------------------------------------------------------------

def run(args: argparse.Namespace, log) -> dict[str, Any]:
    """Both frameworks at every size, each in its own process."""
    from jstyle.bench.harness import _worker, machine, shape_for

    record: dict[str, Any] = {
        "machine": machine(), "command": " ".join(["python -m jstyle.bench", *sys.argv[1:]]),
        "repeats": args.repeats, "sizes": {}}
    for size in args.sizes:
        height, width = shape_for(size)
        entry: dict[str, Any] = {"height": height, "width": width}
        for framework in ("jax", "torch"):
            log(f"layers {size} px: {framework}")
            entry[framework] = _worker({"kind": f"layers_{framework}", "height": height,
                                        "width": width, "repeats": args.repeats},
                                       args.timeout)
        record["sizes"][str(size)] = entry
    return record


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1e3:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:.2f}"


def markdown(record: dict[str, Any]) -> str:
    """One table per size: each piece's times in both frameworks and their ratio, the
    totals by kind of piece, and the sum of the pieces beside one whole evaluation."""
    m = record["machine"]
    out = [f"CPU: {m.get('cpu')} ({m.get('cores')} cores; {', '.join(m.get('isa', []))}); "
           f"jax {m.get('jax')}, torch {m.get('torch')}; median of {record['repeats']}", ""]
    for entry in record["sizes"].values():
        jax_r, torch_r = entry["jax"], entry["torch"]
        title = f"**{entry['width']}x{entry['height']} px**"
        failed = [f"{k}: {r['error']}" for k, r in (("jax", jax_r), ("torch", torch_r))
                  if "error" in r]
        if failed:
            out += [title, "", "Failed: " + "; ".join(failed), ""]
            continue
        head = ["piece", "input, channels"] + [f"{who} {kind} ms" for kind in KINDS
                                    for who in ("jstyle", "torch")] + [
            f"jstyle / torch {kind}" for kind in KINDS]
        out += [title, "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        totals: dict[str, dict[str, float]] = {}
        by_name = {p["name"]: p for p in torch_r["pieces"]}
        for j in jax_r["pieces"]:
            t = by_name.get(j["name"], {})
            cells = [j["name"], f"{j['w']}x{j['h']}, {j['cin']}->{j['cout']}"]
            cells += [_ms(r.get(kind)) for kind in KINDS for r in (j, t)]
            cells += [_ratio(j.get(kind), t.get(kind)) for kind in KINDS]
            out.append("| " + " | ".join(cells) + " |")
            op = totals.setdefault(j["op"], {"jax": 0.0, "torch": 0.0})
            op["jax"] += sum(j[kind] for kind in KINDS)
            op["torch"] += sum(t.get(kind, 0.0) for kind in KINDS)
        out.append("")
        out += ["| kind | jstyle ms | torch ms | jstyle / torch |", "| --- | --- | --- | --- |"]
        summed = {"jax": 0.0, "torch": 0.0}
        for op, by in totals.items():
            a, b = by["jax"], by["torch"]
            summed["jax"] += a
            summed["torch"] += b
            out.append(f"| {op} (forward + gradient) | {a * 1e3:.1f} | {b * 1e3:.1f} | "
                       f"{_ratio(a, b)} |")
        out.append(f"| sum of the pieces | {summed['jax'] * 1e3:.1f} | "
                   f"{summed['torch'] * 1e3:.1f} | {_ratio(summed['jax'], summed['torch'])} |")
        ej, et = jax_r["evaluation_s"], torch_r["evaluation_s"]
        out.append(f"| one whole evaluation | {ej * 1e3:.1f} | {et * 1e3:.1f} | "
                   f"{_ratio(ej, et)} |")
        if jax_r.get("call_s") is not None:
            out += ["", f"A compiled JAX call costs at least {jax_r['call_s'] * 1e3:.3f} ms "
                    "(an empty program's time): JAX's times of the smallest pieces are mostly "
                    "that, which one whole evaluation pays once."]
        out.append("")
    return "\n".join(out)


def _names(objective) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The objective's content and style layer names."""
    return (tuple(n for n, _ in objective.content_layers),
            tuple(n for n, _ in objective.style_layers))


def parser() -> argparse.ArgumentParser:
    from jstyle.terminal import Parser

    p = Parser(prog="python -m jstyle.bench layers", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 512],
                   help="longest sides in pixels (images are 4:3)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per piece")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per framework and size")
    p.add_argument("--out", type=Path, default=Path("out/bench"),
                   help="folder for layers.json")
    return p


def main(argv: list[str]) -> int:
    from jstyle import terminal

    return terminal.main(parser, _layers_main, argv, name="jstyle.bench",
                         interrupted="interrupted; no results written")


def _layers_main(args: argparse.Namespace) -> int:
    from jstyle.bench.harness import measured

    measured(args, ["torch"], run, markdown, "layers.json")
    print(f"\nwrote {args.out / 'layers.json'}", file=sys.stderr)
    return 0
