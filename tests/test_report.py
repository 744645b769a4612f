"""Report figures: loss curves, progression GIFs and montages, drawn with Pillow alone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jstyle import report
from jstyle.errors import JStyleError
from jstyle.report import GAP, PALETTE, loss_curve, montage, progression_gif


def colour_count(path: Path, colour: tuple[int, int, int]) -> int:
    """How many pixels of the image at ``path`` are exactly ``colour``."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    return int(np.all(pixels == np.array(colour, dtype=np.uint8), axis=-1).sum())


def leftovers(folder: Path) -> list[str]:
    """Temporary files an atomic write would leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def decay(iterations: int = 100) -> dict[str, list[tuple[int, float]]]:
    """Loss curves shaped like a run's: total = content + style, spanning several decades."""
    total, content, style = [], [], []
    for i in range(iterations):
        c = 1e5 + 2e7 * (1 - math.exp(-i / 10))
        s = 1e11 * math.exp(-i / 8) + 3e8
        total.append((i, c + s))
        content.append((i, c))
        style.append((i, s))
    return {"total": total, "content": content, "style": style}


def frames(count: int, shape: tuple[int, int] = (24, 32)) -> list[np.ndarray]:
    """Distinct float32 RGB frames in [0, 1]."""
    rng = np.random.default_rng(0)
    return [rng.random((*shape, 3), dtype=np.float32) for _ in range(count)]


def test_loss_curve_png(tmp_path: Path) -> None:
    path = loss_curve(decay(), tmp_path / "loss.png", title="quick")
    assert path == tmp_path / "loss.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == report.CURVE_SIZE
        corner = image.getpixel((0, 0))
    assert corner == (255, 255, 255)
    for colour in PALETTE[:3]:  # every series drawn, and in the legend, in its own colour
        assert colour_count(path, colour) > 0
    assert colour_count(path, PALETTE[3]) == 0  # no fourth series
    assert leftovers(tmp_path) == []


def test_series_colours_are_distinct() -> None:
    colours = [report._colour(i) for i in range(40)]
    assert len(set(colours)) == len(colours)
    assert all(len(set(c)) > 1 for c in colours)  # never grey, which text and axes use


def test_log_axis_spans_many_decades(tmp_path: Path) -> None:
    points = [(i, 1e3 * 10 ** (9 * i / 99)) for i in range(100)]  # 1e3 .. 1e12
    path = loss_curve({"style": points}, tmp_path / "wide.png")
    assert colour_count(path, PALETTE[0]) > 100
    labels = report._labels(report._log_ticks(3, 12))
    assert 3 <= len(labels) <= report.MAX_TICKS
    assert all(label.startswith("1e") for label in labels)


@pytest.mark.parametrize(("lo", "hi"), [
    (3.0, 12.0), (6.0, 9.0), (8.3, 9.8), (9.0, 10.0), (9.3, 9.8), (9.0, 9.2), (9.6, 9.61),
    (-3.0, 2.0), (0.0, 1.5), (-300.0, 300.0), (-1.0, 0.5),
])
def test_log_ticks(lo: float, hi: float) -> None:
    ticks = report._log_ticks(lo, hi)
    assert 2 <= len(ticks) <= report.MAX_TICKS
    values = [report._tick_value(t) for t in ticks]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert all(lo - 1e-9 <= math.log10(v) <= hi + 1e-9 for v in values)
    labels = report._labels(ticks)
    assert len(set(labels)) == len(labels)
    for label, value in zip(labels, values, strict=True):
        assert math.isclose(float(label), value, rel_tol=1e-9)


def test_tick_labels() -> None:
    assert report._labels([(1, 9), (3, 9), (1, 10)]) == ["1e9", "3e9", "1e10"]
    assert report._labels([(1, -3), (25, -4)]) == ["1e-3", "2.5e-3"]
    assert report._labels([(5, -1), (1, 0), (2, 2)]) == ["0.5", "1", "200"]
    assert report._labels([(102, 7)]) == ["1.02e9"]


@pytest.mark.parametrize("series", [
    {"total": [(0, 5e9)]},                                     # a single point
    {"total": [(i, 5e9) for i in range(20)]},                  # all values equal
    {"total": [], "style": []},                                # empty series
    {},                                                        # no series at all
    {"total": [(0, 0.0), (1, -3.0), (2, math.nan), (3, math.inf)]},  # nothing drawable
    {"total": [(0, 1e-300), (1, 1e300)]},                     # a huge range
    {"total": [(7, 1.7e308)]},                                 # next to the float64 limit
    {"total": [(0, 2.0), (1, math.nan), (2, 1.0), (3, 0.0), (4, 0.5)]},  # gaps in the line
])
def test_loss_curve_edge_cases(tmp_path: Path, series: dict) -> None:
    path = loss_curve(series, tmp_path / "edge.png", title="edge")
    with Image.open(path) as image:
        assert image.size == report.CURVE_SIZE
    assert leftovers(tmp_path) == []


def test_single_point_is_a_visible_dot(tmp_path: Path) -> None:
    path = loss_curve({"total": [(3, 5e9)]}, tmp_path / "one.png")
    legend_swatch = 22 * (report.LINE_WIDTH + 1)
    assert colour_count(path, PALETTE[0]) > legend_swatch


def test_loss_curve_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "loss.png"  # the folder is created
    loss_curve({"total": [(0, 1.0)]}, path)
    first = path.read_bytes()
    loss_curve(decay(), path)
    assert path.read_bytes() != first
    assert leftovers(path.parent) == []


def test_write_error_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(JStyleError, match="cannot write loss curve"):
        loss_curve(decay(), blocker / "loss.png")


def test_progression_gif(tmp_path: Path) -> None:
    path = progression_gif(frames(5), tmp_path / "progress.gif", duration_ms=120)
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.size == (32, 24)
        assert gif.n_frames == 5
        assert gif.info.get("loop") == 0
        assert gif.info.get("duration") == 120
    assert leftovers(tmp_path) == []


def test_progression_gif_single_frame(tmp_path: Path) -> None:
    path = progression_gif(frames(1), tmp_path / "one.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 1 and gif.size == (32, 24)


def test_progression_gif_colours(tmp_path: Path) -> None:
    red, blue = np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32)
    red[..., 0], blue[..., 2] = 1.0, 1.0
    path = progression_gif([red, blue], tmp_path / "rb.gif")
    with Image.open(path) as gif:
        gif.seek(0)
        assert gif.convert("RGB").getpixel((4, 4)) == (255, 0, 0)
        gif.seek(1)
        assert gif.convert("RGB").getpixel((4, 4)) == (0, 0, 255)


@pytest.mark.parametrize(("bad", "message"), [
    ([], "no frames"),
    ([np.zeros((4, 4), np.float32)], "expected"),
    ([np.zeros((4, 4, 3), np.float32), np.zeros((4, 5, 3), np.float32)], "same shape"),
])
def test_progression_gif_refuses_bad_frames(tmp_path: Path, bad: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        progression_gif(bad, tmp_path / "bad.gif")
    assert not (tmp_path / "bad.gif").exists()
    assert leftovers(tmp_path) == []


def test_progression_gif_refuses_bad_duration(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duration_ms"):
        progression_gif(frames(2), tmp_path / "bad.gif", duration_ms=0)


@pytest.mark.parametrize(("count", "columns", "grid"), [
    (7, 4, (4, 2)), (7, None, (3, 3)), (4, None, (2, 2)), (1, None, (1, 1)), (3, 10, (3, 1)),
    (5, 1, (1, 5)),
])
def test_montage_grid(tmp_path: Path, count: int, columns: int | None,
                      grid: tuple[int, int]) -> None:
    height, width = 24, 32
    path = montage(frames(count, (height, width)), tmp_path / "grid.png", columns=columns)
    cols, rows = grid
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == (cols * width + (cols + 1) * GAP, rows * height + (rows + 1) * GAP)
        assert image.getpixel((0, 0)) == (255, 255, 255)
    assert leftovers(tmp_path) == []


def test_montage_places_frames(tmp_path: Path) -> None:
    colours = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    tiles = [np.broadcast_to(np.array(c, np.float32), (10, 10, 3)) for c in colours]
    path = montage(tiles, tmp_path / "tiles.png", columns=2)
    with Image.open(path) as image:
        assert image.getpixel((GAP + 5, GAP + 5)) == (255, 0, 0)
        assert image.getpixel((2 * GAP + 15, GAP + 5)) == (0, 255, 0)
        assert image.getpixel((GAP + 5, 2 * GAP + 15)) == (0, 0, 255)
        assert image.getpixel((2 * GAP + 15, 2 * GAP + 15)) == (255, 255, 255)  # empty cell


def test_montage_labels(tmp_path: Path) -> None:
    height, width = 24, 64
    tiles = frames(6, (height, width))
    plain = montage(tiles, tmp_path / "plain.png", columns=3)
    labelled = montage(tiles, tmp_path / "labelled.png", columns=3,
                       labels=[str(i * 100) for i in range(6)])
    with Image.open(plain) as a, Image.open(labelled) as b:
        assert b.width == a.width == 3 * width + 4 * GAP
        assert b.height > a.height
        label_area = np.asarray(b.convert("L"))[GAP + height:GAP + height + (b.height - a.height)
                                                // 2, GAP:GAP + width]
    assert label_area.min() < 128  # dark text under the first frame


def test_montage_widens_cells_for_long_labels(tmp_path: Path) -> None:
    path = montage(frames(2, (8, 8)), tmp_path / "narrow.png",
                   labels=["iteration 1000", "iteration 2000"])
    with Image.open(path) as image:
        assert image.width > 2 * 8 + 3 * GAP


def test_montage_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="labels"):
        montage(frames(2), tmp_path / "m.png", labels=["one"])
    with pytest.raises(ValueError, match="columns"):
        montage(frames(2), tmp_path / "m.png", columns=0)
    with pytest.raises(ValueError, match="no frames"):
        montage([], tmp_path / "m.png")
    assert list(tmp_path.iterdir()) == []
