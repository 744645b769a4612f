"""The paper's figures as labelled contact sheets: ``python -m jstyle.figures NAME``.

Each figure is a set of ordinary runs -- one config each, validated by
:func:`jstyle.config.resolve` and run by :func:`jstyle.pipeline.run_transfer` -- laid out
by :func:`jstyle.report.grid`, with a JSON sidecar beside the sheet (every panel's
config, losses and wall time). The figures of Gatys, Ecker & Bethge (CVPR 2016):

- ``fig1`` (Fig. 1): content reconstructions from white noise (eq. 1 alone, beta = 0)
  from relu1_2, relu2_2, relu3_2, relu4_2 and relu5_2, and style reconstructions --
  texture synthesis, eq. 5 alone, alpha = 0 -- from relu1_1, relu1_1 to relu2_1, ...,
  relu1_1 to relu5_1; the photo and the painting first in their rows.
- ``fig3`` (Fig. 3): one content photo in several styles (eq. 7, the paper's layers).
- ``fig4`` (Fig. 4): rows: the style layers, relu1_1 up to relu1_1 ... relu5_1
  (cumulative, w_l = 1/count); columns: alpha/beta.
- ``fig6`` (Fig. 6): the start of the optimisation: from the content photo, from the
  style image, and from white noise of several seeds.

Beyond the paper, ``styles``: one content photo under every ``style_loss``
(:data:`jstyle.options.STYLE_LOSSES`): eq. 4's Gram matrices, and the statistics matched
after it -- per-channel mean and standard deviation (Li, Wang, Liu & Hou, IJCAI 2017), the
2-Wasserstein distance of fitted Gaussians (Mroueh, AISTATS 2020), the sliced Wasserstein
distance (Heitz, Vanhoey, Chambon & Belcour, CVPR 2021), histograms (Risser, Wilmot &
Barnes 2017), MRF patches (Li & Wand, CVPR 2016) and the relaxed earth mover's distance
(Kolkin, Salavon & Shakhnarovich, CVPR 2019). Their scales differ by orders of magnitude,
so each has its own beta (:data:`STYLE_LOSS_WEIGHTS`). ``--panels DIR`` also writes every
run of any figure as its own PNG, with a run's JSON sidecar, in DIR.

Eq. 1's content loss grows with the number of pixels while eq. 4's style loss does not,
so a given alpha/beta strikes the paper's balance only at the paper's 512 px: smaller
images favour style. Unless ``--unscaled`` is given, alpha is therefore multiplied by
the ratio of pixel counts of the same image at 512 px and at the size run (as the
coarse stages of :func:`jstyle.pipeline.phases` do), so that every alpha/beta shown
means what it means in the paper; the sidecar records the factor and each run's alpha.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from jstyle import __version__
from jstyle.config import Config, resolve
from jstyle.default_images import DEFAULT_CONTENT_NAME, DEFAULT_STYLE_NAME
from jstyle.errors import JStyleError
from jstyle.layers import BLOCKS, PAPER_CONTENT_LAYERS, PAPER_STYLE_LAYERS
from jstyle.options import STYLE_LOSSES
from jstyle.outputs import sidecar_path, weights_record

PROG = "python -m jstyle.figures"
#: The paper's defaults (its size, iterations, alpha and beta): the config's.
DEFAULTS = Config()
#: Longest side of the panels by default: each figure finishes in minutes on 2 CPU cores.
DEFAULT_SIZE = 128
#: alpha/beta of fig3 and fig6 (the paper's 1e-3, from its config default) and fig4's columns.
DEFAULT_RATIO = DEFAULTS.content_weight / DEFAULTS.style_weight
DEFAULT_RATIOS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
#: White-noise starts of fig6 (the paper shows four).
DEFAULT_SEEDS = 4
#: Fig. 1's content reconstructions: the second rectified convolution of each block.
CONTENT_RECONSTRUCTION_LAYERS = tuple(f"relu{b}_2" for b in range(1, len(BLOCKS) + 1))
#: fig3's styles without --style: jstyle's two generated paintings, and the swirl painting
#: recoloured (hue turned by this angle in YIQ, luminance kept) as a third.
DEFAULT_THIRD_STYLE_HUE = 180.0
#: beta (style_weight) of each style loss in the ``styles`` figure; alpha/beta = 1e-3 (the
#: default ratio) means 1e-3 for gram at the paper's beta, and every other loss's beta scaled
#: alike (--ratio), alpha the same for all. How they were chosen (tubingen and starry night,
#: white noise of seed 0, alpha scaled to 512 px as below): first beta * L_style /
#: (alpha * L_content) at the start made Gram's (14 at 256 px; 1e3 times Gram's start style
#: loss over each loss's, rounded: the distances mean_std to histogram start near 5e4
#: against Gram's 6e8, remd at 4e3, mrf at 2e8), then each checked by eye (128 px, 150
#: iterations) and lowered where the painting's layout replaced the photo: wasserstein
#: 1e7 -> 3e6, mrf 2e3 -> 1e3 (5e2 washed the picture out), remd 1e8 -> 2e7. At 256 px and
#: 120 iterations (docs/gallery/styles) every loss but mrf keeps the photo; mrf's content
#: loss stays twice the others' (1.1e10 against 4e9 to 8e9): the painting's patches win.
STYLE_LOSS_WEIGHTS: dict[str, float] = {
    "gram": 1e3,
    "mean_std": 1e7,
    "wasserstein": 3e6,
    "sliced_wasserstein": 1e7,
    "histogram": 1e7,
    "mrf": 1e3,
    "remd": 2e7,
}
assert tuple(STYLE_LOSS_WEIGHTS) == STYLE_LOSSES
#: The ``styles`` figure's panels in each row (two rows per seed, the sources first).
STYLES_PER_ROW = math.ceil(len(STYLE_LOSSES) / 2)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell of a sheet: a source image shown as it is (``show``), or a run.

    ``values`` are the run's config keys beyond the figure's base; ``ratio`` is its
    alpha/beta (alpha is set from it when the run's size is known).
    """

    row: int
    column: int
    label: str
    show: str | None = None  # "content" or "style": a source image, not a run
    style: int = 0  # index of the style image
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    ratio: float | None = None


class Plan(NamedTuple):
    """A figure's cells and labels; ``captions``: write each cell's label under it."""

    title: str
    cells: list[Cell]
    row_labels: list[str] | None = None
    column_labels: list[str] | None = None
    captions: bool = True


class Style(NamedTuple):
    """A style image: its name, the image (None: jstyle's painting), its path (if any) and
    the hue rotation applied to it in degrees."""

    name: str
    image: Image.Image | None
    path: str | None = None
    hue: float = 0.0


def spoken(names: Sequence[str]) -> str:
    """``fig6``, ``fig3 and fig6``, ``fig3, fig6 and styles``."""
    return names[-1] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def panel_stem(label: str) -> str:
    """A panel's file name without suffix (``--panels``): its label, each run of characters
    other than letters, digits, ``.``, ``_`` and ``-`` one ``_`` (``gram``,
    ``relu1_1_to_relu2_1_alpha_beta_1e-3``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_.") or "panel"


def layer_span(layers: Sequence[str]) -> str:
    """``relu1_1`` or ``relu1_1 to relu3_1``: a cumulative set of layers, shortly."""
    return layers[0] if len(layers) == 1 else f"{layers[0]} to {layers[-1]}"


def short_ratio(ratio: float) -> str:
    """``1e-3``, ``5e-4``; ``0.0025`` where one digit would not say it exactly."""
    mantissa, exponent = f"{ratio:.0e}".split("e")
    exact = float(f"{mantissa}e{exponent}") == ratio
    return f"{mantissa}e{int(exponent)}" if exact else f"{ratio:g}"


def ratio_label(ratio: float) -> str:
    """A panel's or column's label: ``alpha/beta = 1e-3`` (ASCII: the fonts may lack Greek)."""
    return f"alpha/beta = {short_ratio(ratio)}"


def fig1(content: str, styles: Sequence[str], ratios: Sequence[float], seeds: int) -> Plan:
    """Fig. 1: content reconstructions (beta = 0) from each block's second layer; style
    reconstructions (alpha = 0) from relu1_1 up to relu1_1 ... relu5_1."""
    cells = [Cell(0, 0, f"content: {content}", show="content"),
             Cell(1, 0, f"style: {styles[0]}", show="style")]
    for i, layer in enumerate(CONTENT_RECONSTRUCTION_LAYERS, start=1):
        # The style term is off; naming the same layer keeps the network no deeper.
        cells.append(Cell(0, i, layer, values={
            "content_layers": [layer], "style_layers": [layer], "style_weight": 0.0}))
    for i in range(1, len(PAPER_STYLE_LAYERS) + 1):
        layers = list(PAPER_STYLE_LAYERS[:i])
        cells.append(Cell(1, i, layer_span(layers), values={
            "style_layers": layers, "content_layers": layers[:1], "content_weight": 0.0}))
    return Plan("Fig. 1: content and style reconstructions from white noise", cells,
                row_labels=["content", "style"])


def fig3(content: str, styles: Sequence[str], ratios: Sequence[float], seeds: int) -> Plan:
    """Fig. 3: the content photo, then its rendering in each style, each style under it."""
    cells = [Cell(0, 0, f"content: {content}", show="content")]
    for i, name in enumerate(styles):
        cells.append(Cell(0, i + 1, name, style=i, ratio=ratios[0]))
        cells.append(Cell(1, i + 1, name, show="style", style=i))
    return Plan(f"Fig. 3: one photo in {len(styles)} styles, {ratio_label(ratios[0])}", cells,
                row_labels=["stylized", "style"])


def fig4(content: str, styles: Sequence[str], ratios: Sequence[float], seeds: int) -> Plan:
    """Fig. 4: rows, the style layers up to relu1_1 ... relu5_1; columns, alpha/beta."""
    cells = []
    rows = [list(PAPER_STYLE_LAYERS[:i]) for i in range(1, len(PAPER_STYLE_LAYERS) + 1)]
    for r, layers in enumerate(rows):
        for c, ratio in enumerate(ratios):
            cells.append(Cell(r, c, f"{layer_span(layers)}, {ratio_label(ratio)}",
                              values={"style_layers": layers}, ratio=ratio))
    return Plan(f"Fig. 4: style layers (rows) and alpha/beta (columns); content "
                f"{', '.join(PAPER_CONTENT_LAYERS)}", cells,
                row_labels=[layer_span(layers) for layers in rows],
                column_labels=[ratio_label(r) for r in ratios], captions=False)


def fig6(content: str, styles: Sequence[str], ratios: Sequence[float], seeds: int) -> Plan:
    """Fig. 6: started from the content photo, from the style image, from white noise."""
    cells = [Cell(0, 0, f"content: {content}", show="content"),
             Cell(0, 1, f"style: {styles[0]}", show="style"),
             Cell(0, 2, "from the content", values={"init": "content"}, ratio=ratios[0]),
             Cell(0, 3, "from the style", values={"init": "style"}, ratio=ratios[0])]
    cells += [Cell(1, s, f"from noise, seed {s}", values={"init": "noise", "seed": s},
                   ratio=ratios[0]) for s in range(seeds)]
    return Plan(f"Fig. 6: starting images, {ratio_label(ratios[0])}", cells)


def styles_figure(content: str, styles: Sequence[str], ratios: Sequence[float],
                  seeds: int) -> Plan:
    """Every style loss (eq. 5 with each ``style_loss`` in turn at every style layer, Gatys
    et al. 2016 and the losses after it; see the module's docstring): the photo and the
    painting first in their column, then each loss, two rows of them per white-noise seed.
    Each loss runs at its own beta (:data:`STYLE_LOSS_WEIGHTS`), alpha the same for all:
    alpha/beta is ``ratios[0]`` for gram and scaled with beta for the others."""
    cells = [Cell(0, 0, f"content: {content}", show="content"),
             Cell(1, 0, f"style: {styles[0]}", show="style")]
    for seed in range(seeds):
        for i, loss in enumerate(STYLE_LOSSES):
            beta = STYLE_LOSS_WEIGHTS[loss]
            cells.append(Cell(2 * seed + i // STYLES_PER_ROW, 1 + i % STYLES_PER_ROW,
                              loss if seeds == 1 else f"{loss}, seed {seed}",
                              values={"style_loss": loss, "style_weight": beta, "seed": seed},
                              ratio=ratios[0] * DEFAULTS.style_weight / beta))
    return Plan(f"Style losses, each its own beta: gram at {ratio_label(ratios[0])}", cells)


class Figure(NamedTuple):
    """A figure: its plan, default iterations per panel, which options apply, what it is."""

    build: Callable[[str, Sequence[str], Sequence[float], int], Plan]
    iterations: int
    options: frozenset[str]  # of "styles", "ratio", "ratios", "seeds"
    about: str
    seeds: int = DEFAULT_SEEDS  # white-noise starts without --seeds (where it applies)


FIGURES: dict[str, Figure] = {
    "fig1": Figure(fig1, 200, frozenset(),
                   "content reconstructions (relu1_2 ... relu5_2) and style reconstructions "
                   "(relu1_1 up to relu1_1..relu5_1) from white noise"),
    "fig3": Figure(fig3, 200, frozenset({"styles", "ratio"}),
                   "one content photo in several styles (--style repeated)"),
    "fig4": Figure(fig4, 100, frozenset({"ratios"}),
                   "rows: style layers relu1_1 up to relu1_1..relu5_1; columns: alpha/beta"),
    "fig6": Figure(fig6, 200, frozenset({"ratio", "seeds"}),
                   "started from the content, the style, and white noise of several seeds"),
    "styles": Figure(styles_figure, 200, frozenset({"ratio", "seeds"}),
                     f"one content photo under every style loss ({', '.join(STYLE_LOSSES)}), "
                     "each at its own beta; --seeds: rows of white-noise starts", seeds=1),
}


def paper_scale(height: int, width: int) -> float:
    """Pixels of the same image at the paper's size over pixels at ``height`` x ``width``:
    the factor that gives alpha the weight it has at 512 px (eq. 1 sums over positions)."""
    from jstyle.images import fitted_size

    paper_w, paper_h = fitted_size(width, height, DEFAULTS.size)
    return paper_w * paper_h / (width * height)


def recoloured(image: np.ndarray, degrees: float) -> np.ndarray:
    """``image`` with its hue turned by ``degrees`` (a rotation of YIQ's I-Q plane, so the
    luminance stays), clipped to [0, 1]."""
    from jstyle.color import rgb_to_yiq, yiq_to_rgb

    if degrees % 360 == 0:
        return image
    yiq = rgb_to_yiq(image)
    turn = math.radians(degrees)
    i, q = yiq[..., 1].copy(), yiq[..., 2].copy()
    yiq[..., 1] = math.cos(turn) * i - math.sin(turn) * q
    yiq[..., 2] = math.sin(turn) * i + math.cos(turn) * q
    return np.clip(yiq_to_rgb(yiq), 0.0, 1.0).astype(np.float32)


# --- command line ----------------------------------------------------------------------------


def _figures_help() -> str:
    lines = ["figures (fig1 to fig6: Gatys, Ecker & Bethge, CVPR 2016; styles: the style "
             "losses after it):"]
    lines += [textwrap.fill(f"{name}  {figure.about} [default: {figure.iterations} "
                            "iterations]", width=88, initial_indent="  ",
                            subsequent_indent=" " * 8) for name, figure in FIGURES.items()]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The argument parser (its --help lists the figures)."""
    from jstyle.terminal import Parser

    p = Parser(
        prog=PROG,
        description="Render one of the paper's figures as a labelled contact sheet PNG, with a "
        "JSON sidecar beside it; every panel is an ordinary jstyle run.",
        epilog=_figures_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", choices=list(FIGURES), help="the figure: "
                   f"{', '.join(FIGURES)}")
    p.add_argument("--content", metavar="PATH", help="content photo (default: jstyle's photo)")
    p.add_argument("--style", metavar="PATH", action="append", default=[],
                   help="style image (default: jstyle's painting); fig3 takes several")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size", type=int, metavar="PX", help=f"longest side of the panels in "
                      f"pixels (default: {DEFAULT_SIZE}, minutes on 2 CPU cores)")
    size.add_argument("--paper", action="store_true", help=f"the paper's {DEFAULTS.size} px "
                      f"and {DEFAULTS.iterations} iterations")
    p.add_argument("--iterations", type=int, metavar="N", help="L-BFGS iterations per panel "
                   "(default: the figure's, below; with --paper the paper's)")
    p.add_argument("--ratio", type=float, metavar="R", help=f"alpha/beta of fig3, fig6 and "
                   f"styles' gram (default: {short_ratio(DEFAULT_RATIO)})")
    p.add_argument("--ratios", type=float, nargs="+", metavar="R", help="fig4's alpha/beta "
                   f"columns (default: {' '.join(short_ratio(r) for r in DEFAULT_RATIOS)})")
    p.add_argument("--seeds", type=int, metavar="N", help=f"white-noise starts of fig6 "
                   f"(default: {DEFAULT_SEEDS}) and styles (default: 1)")
    p.add_argument("--unscaled", action="store_true", help="use alpha/beta at the size run, "
                   "not scaled to the balance it strikes at the paper's 512 px")
    p.add_argument("--output", metavar="PNG", help="the sheet (default: out/figures/NAME.png); "
                   "its JSON sidecar is written beside it")
    p.add_argument("--panels", metavar="DIR", help="also write every run as its own PNG, with "
                   "its JSON sidecar, in DIR (named after its label: styles' gram.png, ...)")
    p.add_argument("--weights", metavar="WEIGHTS", help="VGG-19 weights, as the config key "
                   "'weights' (default: $JSTYLE_WEIGHTS or the user cache)")
    p.add_argument("--quiet", action="store_true", help="no progress lines or bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _check_options(args: argparse.Namespace, figure: Figure) -> None:
    """One line for an option the figure does not take, or a value out of range."""
    given = {"styles": len(args.style) > 1, "ratio": args.ratio is not None,
             "ratios": args.ratios is not None, "seeds": args.seeds is not None}
    for option, used in given.items():
        if used and option not in figure.options:
            flag = "--style more than once" if option == "styles" else f"--{option}"
            takers = [n for n, f in FIGURES.items() if option in f.options]
            raise JStyleError(f"{args.name} does not take {flag} (it is for "
                              f"{spoken(takers)})")
    for ratio in [args.ratio] if args.ratio is not None else args.ratios or []:
        if not (math.isfinite(ratio) and ratio > 0):
            raise JStyleError(f"alpha/beta must be a positive number, got {ratio}")
    if args.seeds is not None and args.seeds < 1:
        raise JStyleError(f"--seeds must be at least 1, got {args.seeds}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done, 1 a panel stopped early, 2 bad input,
    130 interrupted: nothing is written)."""
    from jstyle import terminal

    return terminal.main(parser, _run, argv, name="jstyle",
                         interrupted="interrupted; no figure written")


def _run(args: argparse.Namespace) -> int:
    from jstyle.images import read_image
    from jstyle.run import check_output

    figure = FIGURES[args.name]
    _check_options(args, figure)
    output = Path(args.output or f"out/figures/{args.name}.png")
    check_output(output, [args.content, *args.style])
    panels = Path(args.panels) if args.panels else None
    size = DEFAULTS.size if args.paper else args.size or DEFAULT_SIZE
    iterations = args.iterations if args.iterations is not None else \
        DEFAULTS.iterations if args.paper else figure.iterations
    base = resolve({"size": size, "iterations": iterations, "weights": args.weights,
                    "content": args.content})

    content = read_image(args.content) if args.content else None
    content_name = Path(args.content).stem if args.content else DEFAULT_CONTENT_NAME
    if args.style:
        styles = [Style(Path(p).stem, read_image(p), p) for p in args.style]
    else:
        name = DEFAULT_STYLE_NAME.replace("_", " ")
        styles = [Style(name, None)]
        if "styles" in figure.options:
            from jstyle.default_images import mosaic_painting
            from jstyle.images import from_array

            hue = DEFAULT_THIRD_STYLE_HUE
            styles += [Style("mosaic painting", from_array(mosaic_painting(512, 512))),
                       Style(f"{name}, hue +{hue:g}", None, hue=hue)]
    if "ratios" in figure.options:
        ratios = args.ratios or list(DEFAULT_RATIOS)
    else:
        ratios = [DEFAULT_RATIO if args.ratio is None else args.ratio]
    plan = figure.build(content_name, [s.name for s in styles], ratios,
                        args.seeds or figure.seeds)
    files = None
    if panels is not None:  # checked, like the sheet, before anything runs
        files = panel_files(plan, panels, output)
        for path in files.values():
            check_output(path, [args.content, *args.style])
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    record = render(plan, base, content, styles, output, args.name, quiet=args.quiet,
                    unscaled=args.unscaled, log=log, panels=files)
    stopped = [p for p in record["panels"] if p.get("stopped")]
    for panel in stopped:
        print(f"jstyle: panel {panel['label']!r} stopped: {panel['stopped']}", file=sys.stderr)
    log(f"jstyle: wrote {output} and {sidecar_path(output)}"
        f"{f', and each run in {panels}' if panels is not None else ''} "
        f"({record['runs']} runs, {record['wall_s']:.0f} s)")
    return 1 if stopped else 0


def panel_files(plan: Plan, folder: Path, output: Path) -> dict[tuple[int, int], Path]:
    """Where ``--panels`` writes each run of ``plan``: ``folder/<panel_stem(label)>.png``, by
    the cell's (row, column); one line if two would share a file, or one is the sheet."""
    files: dict[tuple[int, int], Path] = {}
    taken = {output.resolve(): "the sheet"}
    for cell in plan.cells:
        if cell.show is not None:
            continue
        path = folder / f"{panel_stem(cell.label)}.png"
        if path.resolve() in taken:
            raise JStyleError(f"--panels: panel {cell.label!r} would be written to {path}, as "
                              f"{taken[path.resolve()]} is; give another --panels folder or "
                              "distinct --style names")
        taken[path.resolve()] = f"panel {cell.label!r}"
        files[cell.row, cell.column] = path
    return files


def render(plan: Plan, base: Config, content: Image.Image | None, styles: Sequence[Style],
           output: Path, name: str, *, quiet: bool = False, unscaled: bool = False,
           log: Callable[[str], None] = print,
           panels: dict[tuple[int, int], Path] | None = None) -> dict[str, Any]:
    """Run every panel of ``plan`` (each a config: ``base`` and the cell's keys), draw the
    sheet at ``output`` and its JSON sidecar beside it; return the sidecar's record.
    ``panels`` (:func:`panel_files`): also write each run there, as ``jstyle.run`` would (the
    PNG with its config, and the run's sidecar with its figure, label and sheet added)."""
    import jax

    from jstyle import report
    from jstyle.fileio import write_bytes_atomic
    from jstyle.inputs import prepare_inputs
    from jstyle.memory import check_memory, estimate_bytes
    from jstyle.outputs import run_record, write_outputs
    from jstyle.pipeline import load_cached_weights, run_transfer
    from jstyle.progress import ProgressBar

    started = time.perf_counter()
    inputs = []  # per style: the sized images, shared by every panel of that style
    for style in styles:
        prepared = prepare_inputs(base, content, None if style.image is None else [style.image],
                                  check=lambda h, w: check_memory(h, w, base))
        inputs.append(prepared._replace(styles=[recoloured(s, style.hue)
                                                for s in prepared.styles]))
    height, width = inputs[0].content.shape[:2]
    scale = 1.0 if unscaled else paper_scale(height, width)
    weights = load_cached_weights(base.weights, log=log)

    runs = sum(cell.show is None for cell in plan.cells)

    def reporter(bar: ProgressBar, history: list[dict[str, Any]]) -> Callable[[Any], None]:
        """Progress to the bar, and each report's terms to ``history`` (as jstyle.run)."""
        def on_progress(progress) -> None:
            bar.update(progress)
            history.append({"iteration": progress.iteration, **{
                k: progress.terms[k] for k in ("total", "content", "style", "tv")}})
        return on_progress

    frames: dict[tuple[int, int], np.ndarray] = {}
    records, done = [], 0
    for cell in plan.cells:
        panel: dict[str, Any] = {"row": cell.row, "column": cell.column, "label": cell.label,
                                 "style": styles[cell.style].name}
        sized = inputs[cell.style]
        if cell.show is not None:
            frames[cell.row, cell.column] = sized.content if cell.show == "content" \
                else sized.styles[0]
            records.append({**panel, "kind": f"{cell.show} image"})
            continue
        values = {**base.to_dict(), **cell.values}
        style = styles[cell.style]
        if style.path:
            values["style"] = [style.path]
        if cell.ratio is not None:
            beta = values.get("style_weight", DEFAULTS.style_weight)
            values["content_weight"] = cell.ratio * beta * scale
        file = None if panels is None else panels[cell.row, cell.column]
        if file is not None:
            values["output"] = str(file)
        config = resolve(values)
        done += 1
        log(f"jstyle: {name} panel {done}/{runs}: {cell.label} ({width}x{height} px, "
            f"{config.iterations} iterations)")
        began = time.perf_counter()
        terms_history: list[dict[str, Any]] = []
        with ProgressBar(config.iterations, disable=quiet) as bar:
            outcome = run_transfer(weights, sized._replace(init=config.init), config,
                                   on_progress=reporter(bar, terms_history),
                                   on_phase=bar.phase)
        if outcome.interrupted:
            raise KeyboardInterrupt  # the sheet is drawn from finished panels only
        result = outcome.result
        frames[cell.row, cell.column] = np.clip(result.image, 0.0, 1.0)
        config_record = config.to_dict()
        del config_record["output"]  # the panel is drawn into the sheet (and maybe written)
        records.append({**panel, "kind": "run", "ratio": cell.ratio, "hue": style.hue,
                        "config": config_record, "losses": result.terms,
                        "iterations_done": len(result.history),
                        "evaluations": result.evaluations, "timings": result.timings,
                        "wall_s": time.perf_counter() - began, "stopped": result.stopped,
                        **({"file": str(file)} if file is not None else {})})
        if file is not None:
            sources = {"content": base.content or f"default:{DEFAULT_CONTENT_NAME}",
                       "style": [style.path or f"default:{DEFAULT_STYLE_NAME}"],
                       "init": config.init, **({"style_hue": style.hue} if style.hue else {})}
            alone = run_record(config, sized._replace(sources=sources), weights, result,
                                outcome.stages, result.history, terms_history,
                                result.evaluations, estimate_bytes(height, width, config), began)
            alone["figure"] = {"name": name, "label": cell.label, "sheet": str(output)}
            write_outputs(file, result.image, alone)

    rows = 1 + max(cell.row for cell in plan.cells)
    columns = 1 + max(cell.column for cell in plan.cells)
    cells = [[frames.get((r, c)) for c in range(columns)] for r in range(rows)]
    labels = {(cell.row, cell.column): cell.label for cell in plan.cells}
    title = f"{plan.title} ({width}x{height} px, {base.iterations} iterations)"
    sheet = report.grid(
        cells, output, row_labels=plan.row_labels, column_labels=plan.column_labels,
        cell_labels=[[labels.get((r, c)) for c in range(columns)] for r in range(rows)]
        if plan.captions else None, title=title)
    for panel in records:
        panel["box"] = list(sheet.boxes[panel["row"]][panel["column"]])
    record = {
        "jstyle_version": __version__,
        "figure": name,
        "title": title,
        "size": {"height": height, "width": width},
        "iterations": base.iterations,
        "content_weight_scale": scale,
        "inputs": {"content": base.content or f"default:{DEFAULT_CONTENT_NAME}",
                   "styles": [{"name": s.name, "path": s.path, "hue": s.hue} for s in styles]},
        "grid": {"rows": rows, "columns": columns, "row_labels": plan.row_labels,
                 "column_labels": plan.column_labels},
        "sheet": {"width": sheet.image.width, "height": sheet.image.height},
        "panels": records,
        "runs": runs,
        "weights": weights_record(weights),
        "jax": {"version": jax.__version__, "backend": jax.default_backend()},
        "wall_s": time.perf_counter() - started,
    }
    write_bytes_atomic(sidecar_path(output), json.dumps(record, indent=2).encode())
    return record


if __name__ == "__main__":
    sys.exit(main())
