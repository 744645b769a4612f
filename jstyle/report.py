"""Report figures drawn with Pillow alone: loss curves, progression GIFs and montages.

- :func:`loss_curve` draws named series of ``(iteration, value)`` points (jstyle passes
  ``total``, ``content`` = α·L_content and ``style`` = β·L_style) as a PNG line chart on a
  log10 value axis;
- :func:`progression_gif` turns snapshots of the image being optimised into an animated GIF;
- :func:`montage` lays the same snapshots out in a labelled grid PNG;
- :func:`grid` lays frames out row by row with row, column, cell labels and a title (the
  paper's figures: :mod:`jstyle.figures`).

Every file is written atomically (a temporary file beside it, then a rename), so an
interrupted write never leaves a partial figure; an OS error while writing (disk full, no
permission) is a :class:`~jstyle.errors.JStyleError`. matplotlib is not needed.
"""

from __future__ import annotations

import colorsys
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jstyle.errors import JStyleError
from jstyle.fileio import atomic_path
from jstyle.images import from_array

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Color = tuple[int, int, int]

#: Size of a loss-curve image in pixels.
CURVE_SIZE: tuple[int, int] = (640, 400)
#: Margins around the plot area of a loss curve: left, top, right, bottom.
CURVE_MARGINS: tuple[int, int, int, int] = (74, 36, 18, 46)
#: Series colours, in order (matplotlib's tab10 without its grey, which anti-aliased text
#: would share); more series get further evenly spread hues.
PALETTE: tuple[Color, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207),
)
#: White space between the frames of a montage and around them, in pixels.
GAP = 8

WHITE: Color = (255, 255, 255)
INK: Color = (40, 40, 40)
FRAME: Color = (90, 90, 90)
GRID: Color = (228, 228, 228)
LEGEND_EDGE: Color = (200, 200, 200)
MAX_TICKS = 7
LEGEND_PAD, LEGEND_SWATCH, LEGEND_GAP = 8, 22, 6
LINE_WIDTH = 2


@functools.lru_cache(maxsize=8)
def _font(size: int) -> Font:
    """Pillow's default font at ``size`` pixels (its fixed bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError, AttributeError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: Font) -> tuple[int, int, int]:
    """Width, height and top offset of ``text``'s ink."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top, top


def _put_text(draw: ImageDraw.ImageDraw, x: float, y: float, text: str, font: Font,
              h_align: str = "center", v_align: str = "middle", fill: Color = INK) -> None:
    """Draw ``text`` aligned at ``(x, y)``: ``h_align`` left/center/right of ``x``,
    ``v_align`` top/middle/bottom of ``y`` (by the ink of digits and capitals)."""
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    _, top, _, bottom = draw.textbbox((0, 0), "0A", font=font)  # same height for every label
    width, height = right - left, bottom - top
    dx = {"left": 0.0, "center": width / 2, "right": float(width)}[h_align]
    dy = {"top": 0.0, "middle": height / 2, "bottom": float(height)}[v_align]
    draw.text((round(x - dx - left), round(y - dy - top)), text, font=font, fill=fill)


def _fitted(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int) -> str:
    """``text``, cut short with an ellipsis if wider than ``width`` pixels."""
    if _text_size(draw, text, font)[0] <= width:
        return text
    while text and _text_size(draw, text + "…", font)[0] > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _colour(index: int) -> Color:
    """The colour of series number ``index``: the palette, then evenly spread hues."""
    if index < len(PALETTE):
        return PALETTE[index]
    hue = (0.11 + 0.618034 * (index - len(PALETTE))) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, 0.8)
    colour = (round(red * 255), round(green * 255), round(blue * 255))
    return colour if len(set(colour)) > 1 else (colour[0], colour[1], (colour[2] + 60) % 256)


# --- ticks -----------------------------------------------------------------------------------
# A tick is ``(k, q)``: the value k * 10**q with integer k, so labels are exact.


def _tick_value(tick: tuple[int, int]) -> float:
    """The value of a tick as a float."""
    k, q = tick
    return k * 10.0**q


def _exponent(tick: tuple[int, int]) -> int:
    """The decimal exponent of a positive tick's leading digit."""
    k, q = tick
    return len(str(abs(k))) - 1 + q


def _label(tick: tuple[int, int], plain: bool) -> str:
    """``1e9``, ``2.5e-3``; or plain decimals (``0.5``, ``200``) when ``plain``."""
    k, q = tick
    if plain:
        text = format(Decimal(k).scaleb(q), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    digits = str(k)
    fraction = digits[1:].rstrip("0")
    return f"{digits[0]}{'.' + fraction if fraction else ''}e{_exponent(tick)}"


def _labels(ticks: Sequence[tuple[int, int]]) -> list[str]:
    """Tick labels, plain if every tick lies in [0.01, 10000), else all in e-notation."""
    plain = all(k > 0 and -2 <= _exponent((k, q)) <= 3 for k, q in ticks)
    return [_label(tick, plain) for tick in ticks]


def _nice_step(span: float, target: int) -> tuple[int, int]:
    """The 1-2-5 step ``(m, q)`` = m * 10**q giving about ``target`` intervals over ``span``."""
    raw = span / target
    q = math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * 10.0**q >= raw * (1 - 1e-9):
            return (1, q + 1) if m == 10 else (m, q)
    return 1, q + 1  # pragma: no cover - unreachable


def _linear_ticks(lo: float, hi: float, target: int = 5,
                  integer: bool = False) -> list[tuple[int, int]]:
    """Evenly stepped ticks within ``[lo, hi]`` (values, not logarithms); whole numbers
    only if ``integer``."""
    m, q = _nice_step(hi - lo, target)
    if integer and q < 0:
        m, q = 1, 0
    step = m * 10.0**q
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [(j * m, q) for j in range(first, last + 1)]


def _log_ticks(lo: float, hi: float) -> list[tuple[int, int]]:
    """Ticks for a log10 axis spanning ``lo``..``hi`` decades: the densest of powers of ten
    every 1, 2, 5, 10... decades, 1-3, 1-2-5, 1-2-3-5 or 1..9 per decade with at most
    ``MAX_TICKS``; evenly stepped values when the range is under about half a decade."""
    eps = 1e-9

    def with_mantissas(mantissas: Iterable[int]) -> list[tuple[int, int]]:
        return [(m, e) for e in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in mantissas
                if lo - eps <= math.log10(m) + e <= hi + eps]

    candidates = [with_mantissas(range(1, 10)), with_mantissas((1, 2, 3, 5)),
                  with_mantissas((1, 2, 5)), with_mantissas((1, 3))]
    step = (1, 0)
    while True:
        every = step[0] * 10**step[1]
        first, last = math.ceil(lo - eps), math.floor(hi + eps)
        candidates.append([(1, e) for e in range(first, last + 1) if e % every == 0])
        if len(candidates[-1]) <= MAX_TICKS:
            break
        step = {1: (2, step[1]), 2: (5, step[1]), 5: (1, step[1] + 1)}[step[0]]
    for ticks in candidates:
        if len(ticks) <= MAX_TICKS:
            if len(ticks) >= 3:
                return ticks
            break
    try:
        return [t for t in _linear_ticks(10.0**lo, 10.0**hi) if t[0] > 0]
    except OverflowError:  # within half a decade of the float64 limit
        return []


# --- loss curve ------------------------------------------------------------------------------


def _segments(points: Iterable[Sequence[float]]) -> list[list[tuple[float, float]]]:
    """Runs of drawable ``(x, log10 y)`` points; a value <= 0 or non-finite breaks a run."""
    runs: list[list[tuple[float, float]]] = [[]]
    for point in points:
        x, y = float(point[0]), float(point[1])
        if math.isfinite(x) and math.isfinite(y) and y > 0:
            runs[-1].append((x, math.log10(y)))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def _padded(lo: float, hi: float, minimum: float, fraction: float) -> tuple[float, float]:
    """``[lo, hi]`` widened to at least ``minimum`` around its centre, then by ``fraction``."""
    if hi - lo < minimum:
        centre = (lo + hi) / 2
        lo, hi = centre - minimum / 2, centre + minimum / 2
    pad = (hi - lo) * fraction
    return lo - pad, hi + pad


def _legend_size(draw: ImageDraw.ImageDraw, names: Sequence[str],
                 font: Font) -> tuple[int, int, int]:
    """Width and height of the legend box, and the height of one of its rows."""
    _, line_height, _ = _text_size(draw, "0Ag", font)
    width = LEGEND_PAD * 2 + LEGEND_SWATCH + LEGEND_GAP + max(
        _text_size(draw, name, font)[0] for name in names)
    return width, LEGEND_PAD * 2 + (line_height + 6) * len(names) - 6, line_height


def _legend_corner(image: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int],
                   inset: int = 8) -> tuple[int, int]:
    """The top-left corner, among the plot's four corners, where a legend of ``size`` covers
    the fewest coloured (series) pixels; top right first on a tie."""
    left, top, right, bottom = box
    width, height = size
    pixels = np.asarray(image, dtype=np.int16)
    coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 0  # all else is grey
    corners = [(right - inset - width, top + inset), (left + inset, top + inset),
               (right - inset - width, bottom - inset - height),
               (left + inset, bottom - inset - height)]
    return min(corners, key=lambda c: int(
        coloured[max(c[1], 0):c[1] + height + 1, max(c[0], 0):c[0] + width + 1].sum()))


def _draw_legend(draw: ImageDraw.ImageDraw, names: Sequence[str], corner: tuple[int, int],
                 font: Font) -> None:
    """A white, outlined legend box with its top-left corner at ``corner``."""
    width, height, line_height = _legend_size(draw, names, font)
    left, top = corner
    draw.rectangle((left, top, left + width, top + height), fill=WHITE, outline=LEGEND_EDGE)
    for i, name in enumerate(names):
        y = round(top + LEGEND_PAD + i * (line_height + 6) + line_height / 2)
        x = left + LEGEND_PAD
        draw.line((x, y, x + LEGEND_SWATCH, y), fill=_colour(i), width=LINE_WIDTH + 1)
        _put_text(draw, x + LEGEND_SWATCH + LEGEND_GAP, y, name, font, h_align="left")


def _vertical_text(image: Image.Image, text: str, font: Font, centre: tuple[int, int]) -> None:
    """Paste ``text`` rotated a quarter turn anticlockwise, centred at ``centre``."""
    probe = ImageDraw.Draw(image)
    width, height, _ = _text_size(probe, text, font)
    label = Image.new("RGB", (width + 4, height + 6), WHITE)
    _put_text(ImageDraw.Draw(label), (width + 4) / 2, (height + 6) / 2, text, font)
    label = label.rotate(90, expand=True)
    image.paste(label, (centre[0] - label.width // 2, centre[1] - label.height // 2))


def _save(image: Image.Image, path: str | Path, what: str, **options: object) -> Path:
    """Write ``image`` atomically; an OS error becomes a one-line :class:`JStyleError`."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, **options)
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise JStyleError(f"cannot write {what} {path}: {reason} (check free space and the "
                          "folder's permissions)") from None
    return path


def render_loss_curve(series: Mapping[str, Sequence[tuple[int, float]]],
                      title: str = "loss") -> Image.Image:
    """The chart :func:`loss_curve` saves, as an RGB Pillow image of :data:`CURVE_SIZE`."""
    width, height = CURVE_SIZE
    margin_left, margin_top, margin_right, margin_bottom = CURVE_MARGINS
    left, top = margin_left, margin_top
    right, bottom = width - margin_right, height - margin_bottom
    image = Image.new("RGB", CURVE_SIZE, WHITE)
    draw = ImageDraw.Draw(image)
    small, title_font = _font(12), _font(15)

    names = list(series)
    runs = {name: _segments(series[name]) for name in names}
    points = [p for name in names for run in runs[name] for p in run]

    _put_text(draw, (left + right) / 2, margin_top / 2,
              _fitted(draw, title, title_font, right - left), title_font)
    _put_text(draw, (left + right) / 2, height - 12, "iteration", small)
    _vertical_text(image, "loss (log scale)", small, (12, (top + bottom) // 2))

    if points:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x_lo, x_hi = _padded(min(xs), max(xs), 2.0, 0.02)
        y_lo, y_hi = _padded(min(ys), max(ys), 0.3, 0.05)
        x_ticks = _linear_ticks(x_lo, x_hi, target=6, integer=True)
        if min(xs) >= 0:
            x_ticks = [t for t in x_ticks if t[0] >= 0]
        y_ticks = _log_ticks(y_lo, y_hi)

        def px(x: float) -> float:
            """Pixel column of iteration ``x``."""
            return left + (x - x_lo) / (x_hi - x_lo) * (right - left)

        def py(y: float) -> float:
            """Pixel row of log10 value ``y``."""
            return bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)

        for tick in x_ticks:
            x, text = round(px(_tick_value(tick))), _label(tick, plain=True)
            draw.line((x, top, x, bottom), fill=GRID)
            draw.line((x, bottom, x, bottom + 4), fill=FRAME)
            _put_text(draw, x, bottom + 7, text, small, v_align="top")
        for tick, text in zip(y_ticks, _labels(y_ticks), strict=True):
            y = round(py(math.log10(_tick_value(tick))))
            draw.line((left, y, right, y), fill=GRID)
            draw.line((left - 4, y, left, y), fill=FRAME)
            _put_text(draw, left - 7, y, text, small, h_align="right")
        for i, name in enumerate(names):
            colour = _colour(i)
            for run in runs[name]:
                xy = [(px(x), py(y)) for x, y in run]
                if len(xy) == 1:
                    (x, y), r = xy[0], LINE_WIDTH + 1
                    draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
                else:
                    draw.line(xy, fill=colour, width=LINE_WIDTH, joint="curve")
    else:
        _put_text(draw, (left + right) / 2, (top + bottom) / 2, "no data", _font(14),
                  fill=FRAME)

    draw.rectangle((left, top, right, bottom), outline=FRAME)
    if names:
        size = _legend_size(draw, names, small)[:2]
        corner = _legend_corner(image, (left, top, right, bottom), size)
        _draw_legend(draw, names, corner, small)
    return image


def loss_curve(series: Mapping[str, Sequence[tuple[int, float]]], path: str | Path,
               title: str = "loss") -> Path:
    """Save a PNG line chart of named ``(iteration, value)`` series; return ``path``.

    The x axis is linear in iterations, the y axis log10 of the values; points whose value
    is <= 0 or not finite are skipped (breaking the line there), and a lone point is a dot.
    Each series gets its own colour (:data:`PALETTE`, in the mapping's order; later series
    are drawn over earlier ones) and a legend entry, placed in the plot corner that hides
    the least of the lines; with no drawable point at all the axes carry a "no data" note.
    The image is :data:`CURVE_SIZE` pixels, RGB on white, written atomically.
    """
    return _save(render_loss_curve(series, title), path, "loss curve", format="PNG")


# --- progression ---------------------------------------------------------------------------


def _check_frames(frames: Sequence[np.ndarray], same_shape: bool) -> list[np.ndarray]:
    """The frames as arrays, checked to be a non-empty list of ``(H, W, 3)`` images."""
    arrays = [np.asarray(frame) for frame in frames]
    if not arrays:
        raise ValueError("no frames given")
    for i, array in enumerate(arrays):
        if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
            raise ValueError(f"frame {i} has shape {array.shape}; expected (H, W, 3)")
        if same_shape and array.shape != arrays[0].shape:
            raise ValueError(f"frame {i} has shape {array.shape}, frame 0 {arrays[0].shape}; "
                             "all frames must have the same shape")
    return arrays


def progression_gif(frames: Sequence[np.ndarray], path: str | Path,
                    duration_ms: int = 200) -> Path:
    """Save float RGB frames in [0, 1] (all of one shape) as a looping animated GIF.

    Each frame shows for ``duration_ms`` milliseconds (GIF counts in units of 10 ms). Pillow
    merges a frame identical to the one before it into that one, adding up their durations,
    so such a file has fewer frames than given. Written atomically; returns ``path``.
    """
    if duration_ms <= 0:
        raise ValueError(f"duration_ms must be positive, not {duration_ms}")
    images = [from_array(array) for array in _check_frames(frames, same_shape=True)]
    return _save(images[0], path, "animation", format="GIF", save_all=True,
                 append_images=images[1:], duration=int(duration_ms), loop=0)


def render_montage(frames: Sequence[np.ndarray], columns: int | None = None,
                   labels: Sequence[str] | None = None) -> Image.Image:
    """The grid :func:`montage` saves, as an RGB Pillow image."""
    arrays = _check_frames(frames, same_shape=False)
    count = len(arrays)
    if columns is None:
        columns = math.ceil(math.sqrt(count))
    if columns < 1:
        raise ValueError(f"columns must be at least 1, not {columns}")
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    if labels is not None and len(labels) != count:
        raise ValueError(f"{len(labels)} labels for {count} frames")

    font = _font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    cell_w = max(a.shape[1] for a in arrays)
    cell_h = max(a.shape[0] for a in arrays)
    label_h = 0
    if labels is not None:
        label_h = _text_size(probe, "0Ag", font)[1] + 8
        cell_w = max([cell_w] + [_text_size(probe, str(t), font)[0] + 4 for t in labels])
    row_h = cell_h + label_h
    canvas = Image.new("RGB", (columns * cell_w + (columns + 1) * GAP,
                               rows * row_h + (rows + 1) * GAP), WHITE)
    draw = ImageDraw.Draw(canvas)
    for i, array in enumerate(arrays):
        row, column = divmod(i, columns)
        x0, y0 = GAP + column * (cell_w + GAP), GAP + row * (row_h + GAP)
        height, width = array.shape[:2]
        canvas.paste(from_array(array), (x0 + (cell_w - width) // 2, y0 + (cell_h - height) // 2))
        if labels is not None:
            _put_text(draw, x0 + cell_w / 2, y0 + cell_h + label_h / 2, str(labels[i]), font)
    return canvas


def montage(frames: Sequence[np.ndarray], path: str | Path, columns: int | None = None,
            labels: Sequence[str] | None = None) -> Path:
    """Save float RGB frames in [0, 1] as a grid PNG, ``columns`` wide; return ``path``.

    ``columns`` defaults to ceil(sqrt(count)); the rows follow. Frames may differ in size:
    each sits centred in a cell of the largest. ``labels`` (one per frame, e.g. iteration
    numbers) are written small under each frame, the cells widened to fit them. Frames and
    the border are separated by :data:`GAP` white pixels. Written atomically.
    """
    return _save(render_montage(frames, columns, labels), path, "montage", format="PNG")


# --- labelled grid ---------------------------------------------------------------------------

#: A frame's place in a grid image: left, top, width, height, in pixels.
Box = tuple[int, int, int, int]
#: Padding around a label's text, in pixels.
LABEL_PAD = 8


class Grid(NamedTuple):
    """A labelled grid image and where each frame sits in it (None for an empty cell)."""

    image: Image.Image
    boxes: list[list[Box | None]]


def _grid_labels(labels: Sequence[Sequence[str | None]] | None, shape: Sequence[int],
                 what: str) -> list[list[str]]:
    """Cell labels shaped like the cells ("" where none), checked."""
    if labels is None:
        return [[""] * count for count in shape]
    if len(labels) != len(shape) or any(len(r) != n for r, n in zip(labels, shape, strict=True)):
        raise ValueError(f"{what} must have one label per cell, row by row")
    return [["" if text is None else str(text) for text in row] for row in labels]


def _line_labels(labels: Sequence[str | None] | None, count: int, what: str) -> list[str]:
    """Row or column labels, one per row or column ("" where none), checked."""
    if labels is None:
        return [""] * count
    if len(labels) != count:
        raise ValueError(f"{len(labels)} {what} for {count}")
    return ["" if text is None else str(text) for text in labels]


def render_grid(cells: Sequence[Sequence[np.ndarray | None]], *,
                row_labels: Sequence[str | None] | None = None,
                column_labels: Sequence[str | None] | None = None,
                cell_labels: Sequence[Sequence[str | None]] | None = None,
                title: str | None = None) -> Grid:
    """Float RGB frames in [0, 1], row by row, as one labelled grid image (a contact sheet).

    ``cells`` is a list of rows; a row may be shorter than the longest (the rest is empty)
    and a cell may be None (left empty). Every cell is as large as the largest frame, each
    frame centred in its cell, and cells are separated by :data:`GAP` white pixels. Labels
    are optional: ``row_labels`` (one per row, to the left of it), ``column_labels`` (one
    per column, above it), ``cell_labels`` (shaped like ``cells``, under each frame) and a
    ``title`` above everything (cut short with an ellipsis if wider than the grid). Cells
    widen to fit their labels; the row-label margin fits the longest row label.
    Returns the RGB image and each frame's box ``(left, top, width, height)``.
    """
    rows = [list(row) for row in cells]
    frames = [np.asarray(c) for row in rows for c in row if c is not None]
    if not frames:
        raise ValueError("no frames given")
    _check_frames(frames, same_shape=False)
    shape = [len(row) for row in rows]
    columns = max(shape)
    under = _grid_labels(cell_labels, shape, "cell_labels")
    left_labels = _line_labels(row_labels, len(rows), "row labels")
    top_labels = _line_labels(column_labels, columns, "column labels")

    font, title_font = _font(12), _font(15)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = _text_size(probe, "0Ag", font)[1]

    def width(text: str, face: Font = font) -> int:
        return _text_size(probe, text, face)[0] if text else 0

    cell_w = max([f.shape[1] for f in frames] + [width(t) + 4 for row in under for t in row]
                 + [width(t) + 4 for t in top_labels])
    cell_h = max(f.shape[0] for f in frames)
    label_h = line_h + LABEL_PAD if any(t for row in under for t in row) else 0
    column_h = line_h + LABEL_PAD if any(top_labels) else 0
    row_w = max(width(t) for t in left_labels) + GAP if any(left_labels) else 0
    title_h = _text_size(probe, "0Ag", title_font)[1] + 2 * LABEL_PAD if title else 0
    grid_w = row_w + columns * cell_w + (columns + 1) * GAP
    grid_top = title_h + column_h
    canvas = Image.new("RGB", (grid_w, grid_top + len(rows) * (cell_h + label_h + GAP) + GAP),
                       WHITE)
    draw = ImageDraw.Draw(canvas)

    if title:
        _put_text(draw, grid_w / 2, title_h / 2 + 2,
                  _fitted(draw, title, title_font, grid_w - 2 * GAP), title_font)
    for column, text in enumerate(top_labels):
        if text:
            x = row_w + GAP + column * (cell_w + GAP) + cell_w / 2
            _put_text(draw, x, title_h + column_h / 2 + GAP / 2, text, font)
    boxes: list[list[Box | None]] = []
    for r, row in enumerate(rows):
        y0 = grid_top + GAP + r * (cell_h + label_h + GAP)
        if left_labels[r]:
            _put_text(draw, GAP, y0 + cell_h / 2, left_labels[r], font, h_align="left")
        boxes.append([])
        for c, cell in enumerate(row):
            x0 = row_w + GAP + c * (cell_w + GAP)
            if cell is None:
                boxes[-1].append(None)
            else:
                height, frame_w = np.asarray(cell).shape[:2]
                box = (x0 + (cell_w - frame_w) // 2, y0 + (cell_h - height) // 2, frame_w, height)
                canvas.paste(from_array(np.asarray(cell)), box[:2])
                boxes[-1].append(box)
            if under[r][c]:
                _put_text(draw, x0 + cell_w / 2, y0 + cell_h + label_h / 2, under[r][c], font)
    return Grid(canvas, boxes)


def grid(cells: Sequence[Sequence[np.ndarray | None]], path: str | Path, **labels) -> Grid:
    """Save :func:`render_grid`'s labelled grid as a PNG, atomically; return the grid
    (the image and each frame's box). ``labels``: :func:`render_grid`'s keywords."""
    sheet = render_grid(cells, **labels)
    _save(sheet.image, path, "contact sheet", format="PNG")
    return sheet
