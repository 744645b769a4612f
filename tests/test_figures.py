"""python -m jstyle.figures: the paper's figures as labelled contact sheets."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from jstyle import figures
from jstyle.config import resolve
from jstyle.images import from_array
from jstyle.inputs import prepare_inputs
from jstyle.layers import PAPER_STYLE_LAYERS
from jstyle.options import STYLE_LOSSES


def one_line_exit_2(capsys, argv: list[str], *fragments: str) -> None:
    """``main(argv)`` exits 2 with one ``jstyle: error:`` line holding every fragment."""
    assert figures.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jstyle: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- the plans: pure functions of the options --------------------------------------------


def by_place(plan: figures.Plan) -> dict[tuple[int, int], figures.Cell]:
    return {(cell.row, cell.column): cell for cell in plan.cells}


def test_fig1_plan_reconstructs_content_and_style_alone():
    cells = by_place(figures.fig1("cat", ["swirl"], [1e-3], 4))
    assert len(cells) == 12 and cells[0, 0].show == "content" and cells[1, 0].show == "style"
    for i, layer in enumerate(("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2"), start=1):
        cell = cells[0, i]
        assert cell.label == layer and cell.show is None
        assert resolve(cell.values).content_layers == ((layer, 1.0),)
        assert cell.values["style_weight"] == 0
    for i in range(1, 6):
        config = resolve(cells[1, i].values)
        assert [n for n, _ in config.style_layers] == list(PAPER_STYLE_LAYERS[:i])
        assert config.content_weight == 0
    assert cells[1, 1].label == "relu1_1" and cells[1, 5].label == "relu1_1 to relu5_1"


def test_fig4_plan_is_layers_by_ratios():
    plan = figures.fig4("cat", ["swirl"], figures.DEFAULT_RATIOS, 4)
    assert len(plan.cells) == 25 and not plan.captions
    assert plan.row_labels == ["relu1_1", "relu1_1 to relu2_1", "relu1_1 to relu3_1",
                               "relu1_1 to relu4_1", "relu1_1 to relu5_1"]
    assert plan.column_labels == ["alpha/beta = 1e-5", "alpha/beta = 1e-4", "alpha/beta = 1e-3",
                                  "alpha/beta = 1e-2", "alpha/beta = 1e-1"]
    cell = by_place(plan)[2, 3]
    assert cell.ratio == 1e-2 and cell.values["style_layers"] == list(PAPER_STYLE_LAYERS[:3])


def test_fig3_and_fig6_plans():
    fig3 = by_place(figures.fig3("cat", ["a", "b", "c"], [5e-4], 4))
    assert [fig3[0, i].label for i in range(4)] == ["content: cat", "a", "b", "c"]
    assert [fig3[1, i].label for i in range(1, 4)] == ["a", "b", "c"]
    assert fig3[0, 2].style == 1 and fig3[0, 2].ratio == 5e-4 and fig3[1, 2].show == "style"
    fig6 = by_place(figures.fig6("cat", ["swirl"], [1e-3], 3))
    assert fig6[0, 2].values == {"init": "content"} and fig6[0, 3].values == {"init": "style"}
    assert [fig6[1, s].values for s in range(3)] == [{"init": "noise", "seed": s}
                                                    for s in range(3)]


def test_styles_plan_runs_every_style_loss_at_its_own_beta():
    plan = figures.styles_figure("cat", ["swirl"], [2e-3], 1)
    cells = by_place(plan)
    assert cells[0, 0].show == "content" and cells[1, 0].show == "style"
    assert cells[0, 0].label == "content: cat" and cells[1, 0].label == "style: swirl"
    runs = [c for c in plan.cells if c.show is None]
    assert [c.label for c in runs] == list(STYLE_LOSSES)  # in STYLE_LOSSES order, one each
    per_row = figures.STYLES_PER_ROW
    for i, (cell, loss) in enumerate(zip(runs, STYLE_LOSSES, strict=True)):
        assert (cell.row, cell.column) == (i // per_row, 1 + i % per_row)
        config = resolve(cell.values)
        assert config.style_loss == ((loss, 1.0),) and config.seed == 0
        assert config.style_weight == figures.STYLE_LOSS_WEIGHTS[loss]
        # alpha is alike for every loss: alpha/beta as given for gram, scaled with beta
        assert cell.ratio * config.style_weight == pytest.approx(2e-3 * 1000)
    assert by_place(plan)[0, 1].ratio == 2e-3  # gram: the paper's beta
    assert set(figures.STYLE_LOSS_WEIGHTS) == set(STYLE_LOSSES)
    assert all(w > 0 for w in figures.STYLE_LOSS_WEIGHTS.values())

    seeds = figures.styles_figure("cat", ["swirl"], [1e-3], 2)
    runs = [c for c in seeds.cells if c.show is None]
    assert len(runs) == 2 * len(STYLE_LOSSES) and len(seeds.cells) == len(runs) + 2
    assert runs[len(STYLE_LOSSES)].label == "gram, seed 1"
    assert runs[len(STYLE_LOSSES)].values["seed"] == 1
    assert (runs[len(STYLE_LOSSES)].row, runs[len(STYLE_LOSSES)].column) == (2, 1)
    assert len({(c.row, c.column) for c in seeds.cells}) == len(seeds.cells)


def test_panel_stems():
    assert figures.panel_stem("sliced_wasserstein") == "sliced_wasserstein"
    assert figures.panel_stem("relu1_1 to relu2_1, alpha/beta = 1e-3") == \
        "relu1_1_to_relu2_1_alpha_beta_1e-3"
    assert figures.panel_stem("from noise, seed 0") == "from_noise_seed_0"
    assert figures.panel_stem("/") == "panel"


def test_ratio_labels_and_paper_scale():
    assert figures.ratio_label(1e-3) == "alpha/beta = 1e-3"
    assert figures.ratio_label(5e-4) == "alpha/beta = 5e-4"
    assert figures.ratio_label(0.0025) == "alpha/beta = 0.0025"
    assert figures.DEFAULT_RATIO == 1e-3  # the paper's
    assert figures.paper_scale(384, 512) == 1.0
    assert figures.paper_scale(96, 128) == 16.0
    assert figures.paper_scale(128, 64) == pytest.approx(16.0)


def test_recoloured_turns_hue_and_keeps_luminance():
    from jstyle.color import luminance

    image = np.random.default_rng(0).uniform(0.3, 0.7, (8, 8, 3)).astype(np.float32)
    assert figures.recoloured(image, 0) is image and figures.recoloured(image, 360) is image
    turned = figures.recoloured(image, 180)
    assert not np.allclose(turned, image, atol=0.02)
    assert np.allclose(luminance(turned), luminance(image), atol=1e-5)
    assert np.allclose(figures.recoloured(turned, 180), image, atol=1e-5)


def test_render_grid_places_frames_and_labels():
    from jstyle import report

    rng = np.random.default_rng(0)
    frame = rng.uniform(0.1, 0.9, (10, 16, 3)).astype(np.float32)
    small = rng.uniform(0.1, 0.9, (6, 8, 3)).astype(np.float32)
    plain = report.render_grid([[frame, None], [small]])
    assert plain.boxes[0][1] is None and len(plain.boxes[1]) == 1
    g = report.GAP
    assert plain.image.size == (2 * 16 + 3 * g, 2 * 10 + 3 * g)  # cells of the largest frame
    assert plain.boxes[0][0] == (g, g, 16, 10) and plain.boxes[1][0] == (g + 4, 2 * g + 12, 8, 6)
    pixels = np.asarray(plain.image)
    assert np.array_equal(pixels[g:g + 10, g:g + 16], np.asarray(from_array(frame)))

    labelled = report.render_grid([[frame, frame], [frame]], row_labels=["first row", None],
                                  column_labels=["a", "a much longer column label"],
                                  cell_labels=[["x", None], ["y"]], title="a title")
    left, top = labelled.boxes[0][0][:2]
    assert left > g and top > g  # room for the row labels, the title and column labels
    assert labelled.boxes[0][1][0] - left > 16 + g  # cells widened to fit the long label
    assert labelled.boxes[1][0][1] - top > 10 + g  # and a caption line under each row
    with pytest.raises(ValueError, match="one label per cell"):
        report.render_grid([[frame, frame]], cell_labels=[["x"]])
    with pytest.raises(ValueError, match="2 row labels for 1"):
        report.render_grid([[frame]], row_labels=["a", "b"])
    with pytest.raises(ValueError, match="no frames"):
        report.render_grid([[None]])


# --- end to end, through main() ------------------------------------------------------------

SIZE = 32


@pytest.fixture
def weights_args(real_weights) -> list[str]:
    """The real weights, through the same --weights option users pass."""
    return ["--weights", str(real_weights.path)]


@pytest.mark.parametrize(
    ("argv", "rows", "columns", "runs"),
    [
        (["fig1"], 2, 6, 10),
        (["fig3"], 2, 4, 3),  # jstyle's two paintings and a recoloured copy
        (["fig4", "--ratios", "1e-3", "1e-2"], 5, 2, 10),
        (["fig6", "--seeds", "1"], 2, 4, 3),
    ],
)
def test_figure_renders_a_labelled_sheet(argv, rows, columns, runs, tmp_path, weights_args,
                                         capsys):
    from jstyle import engine

    output = tmp_path / "sheets" / f"{argv[0]}.png"
    engine._COMPILED.clear()
    code = figures.main([*argv, "--size", str(SIZE), "--iterations", "1", "--output",
                         str(output), *weights_args])
    assert code == 0, capsys.readouterr().err
    if argv[0] == "fig4":  # alpha/beta is data: one compiled program per layer set, not per panel
        assert len(engine._COMPILED) == rows
    err = capsys.readouterr().err
    assert f"panel {runs}/{runs}" in err and f"wrote {output}" in err
    record = json.loads(output.with_suffix(".json").read_text())
    plan = figures.FIGURES[argv[0]].build(
        "chelsea", [s["name"] for s in record["inputs"]["styles"]],
        [float(r) for r in argv[2:]] if argv[0] == "fig4" else [figures.DEFAULT_RATIO], 1)
    assert record["figure"] == argv[0] and record["runs"] == runs
    assert record["grid"]["rows"] == rows and record["grid"]["columns"] == columns
    assert record["grid"]["row_labels"] == plan.row_labels
    assert record["grid"]["column_labels"] == plan.column_labels
    assert [p["label"] for p in record["panels"]] == [c.label for c in plan.cells]
    assert record["wall_s"] > 0

    with Image.open(output) as sheet:
        assert sheet.size == (record["sheet"]["width"], record["sheet"]["height"])
        pixels = np.asarray(sheet.convert("RGB"))
    height, width = record["size"]["height"], record["size"]["width"]
    assert max(height, width) == SIZE
    boxes = [p["box"] for p in record["panels"]]
    for left, top, w, h in boxes:  # each panel at its size, inside the sheet, not blank
        assert (w, h) == (width, height)
        assert left >= 0 and left + w <= pixels.shape[1] and top + h <= pixels.shape[0]
        assert (pixels[top:top + h, left:left + w] != 255).any()
    for panel in record["panels"]:  # one grid: rows share a top, columns a left
        for other in record["panels"]:
            assert (panel["box"][1] == other["box"][1]) == (panel["row"] == other["row"])
            assert (panel["box"][0] == other["box"][0]) == (panel["column"] == other["column"])
    assert len({b[0] for b in boxes}) == columns and len({b[1] for b in boxes}) == rows

    ran = [p for p in record["panels"] if p["kind"] == "run"]
    assert len(ran) == runs
    for panel in ran:
        assert panel["iterations_done"] == 1 and panel["wall_s"] > 0 and not panel["stopped"]
        assert panel["config"]["size"] == SIZE and panel["config"]["iterations"] == 1
        assert panel["config"]["weights"] == weights_args[1]
        assert math.isfinite(panel["losses"]["total"])
        if panel["ratio"] is not None:  # alpha: alpha/beta times beta, scaled to 512 px
            assert panel["config"]["content_weight"] == pytest.approx(
                panel["ratio"] * panel["config"]["style_weight"] * record["content_weight_scale"])
    assert record["content_weight_scale"] == figures.paper_scale(height, width)

    content = next(p for p in record["panels"] if p["kind"] == "content image") \
        if argv[0] != "fig4" else None
    if content is not None:  # the photo as the runs saw it, where its box says
        left, top, w, h = content["box"]
        expected = np.asarray(from_array(prepare_inputs(resolve({"size": SIZE}), None,
                                                        None).content))
        assert np.array_equal(pixels[top:top + h, left:left + w], expected)


def test_styles_renders_every_loss_and_writes_each_panel(tmp_path, weights_args, capsys):
    from jstyle.outputs import config_from_image

    # square, 48 px: relu5_1 is 3x3, the least on which mrf finds a 3x3 patch
    content = write_image(tmp_path / "square.png", (48, 48))
    output, folder = tmp_path / "styles.png", tmp_path / "panels"
    code = figures.main(["styles", "--content", str(content), "--size", "48", "--iterations",
                         "1", "--output", str(output), "--panels", str(folder), *weights_args])
    err = capsys.readouterr().err
    assert code == 0, err
    runs = len(STYLE_LOSSES)
    assert f"panel {runs}/{runs}: remd (48x48 px, 1 iterations)" in err
    assert f"wrote {output}" in err and f"each run in {folder}" in err
    record = json.loads(output.with_suffix(".json").read_text())
    assert record["figure"] == "styles" and record["runs"] == runs
    assert record["grid"] == {"rows": 2, "columns": 1 + figures.STYLES_PER_ROW,
                              "row_labels": None, "column_labels": None}
    with Image.open(output) as sheet:
        assert sheet.size == (record["sheet"]["width"], record["sheet"]["height"])
    ran = [p for p in record["panels"] if p["kind"] == "run"]
    assert [p["label"] for p in ran] == list(STYLE_LOSSES)
    assert sorted(f.name for f in folder.iterdir()) == sorted(
        f"{loss}.{suffix}" for loss in STYLE_LOSSES for suffix in ("png", "json"))
    scale = record["content_weight_scale"]
    for panel, loss in zip(ran, STYLE_LOSSES, strict=True):
        config = panel["config"]
        assert config["style_loss"] == {loss: 1.0} and panel["iterations_done"] == 1
        assert config["style_weight"] == figures.STYLE_LOSS_WEIGHTS[loss]
        assert config["content_weight"] == pytest.approx(figures.DEFAULT_RATIO * 1000 * scale)
        assert math.isfinite(panel["losses"]["total"]) and not panel["stopped"]
        file = folder / f"{loss}.png"
        assert panel["file"] == str(file)
        with Image.open(file) as image:  # the panel's pixels, as in the sheet
            assert image.size == (48, 48)
        alone = json.loads(file.with_suffix(".json").read_text())  # a run's sidecar
        assert alone["config"] == {**config, "output": str(file)}
        assert alone["figure"] == {"name": "styles", "label": loss, "sheet": str(output)}
        assert alone["inputs"]["content"] == str(content) and alone["history"]
        assert alone["losses"] == panel["losses"]
        assert config_from_image(file)["style_loss"] == {loss: 1.0}


@pytest.fixture
def fake_runs(monkeypatch):
    """Runs replaced by a stand-in that returns the content at once (no weights, no
    compilation); yields the configs it was given, and a state whose ``stopped`` makes
    every run report that it stopped early."""
    from jstyle import pipeline
    from jstyle.transfer import Result

    weights = SimpleNamespace(path="stand-in.h5", sha256="0" * 64, source="stand-in",
                              params_sha256="0" * 64, variant="vgg19", normalization=None)

    configs, state = [], {"stopped": None}

    def run_transfer(weights, inputs, config, **kw):
        configs.append(config)
        terms = {"total": 1.0, "content": 1.0, "style": 1.0, "tv": 0.0}
        result = Result(inputs.content, terms, [1.0] * config.iterations, config.iterations,
                        {"optimize_s": 0.0}, state["stopped"])
        return pipeline.Outcome(result, [], False, None, None)

    monkeypatch.setattr(pipeline, "run_transfer", run_transfer)
    monkeypatch.setattr(pipeline, "load_cached_weights", lambda path, log=print: weights)
    return configs, state


@pytest.mark.parametrize("unscaled", [False, True])
def test_alpha_is_scaled_to_the_paper_unless_unscaled(unscaled, tmp_path, fake_runs, capsys):
    configs, _ = fake_runs
    output = tmp_path / "sheet.png"
    style = write_image(tmp_path / "waves.png")
    argv = ["fig3", "--style", str(style), "--ratio", "2e-3", "--size", str(SIZE),
            "--output", str(output), "--quiet"] + (["--unscaled"] if unscaled else [])
    assert figures.main(argv) == 0
    assert capsys.readouterr().err == ""  # --quiet
    record = json.loads(output.with_suffix(".json").read_text())
    scale = 1.0 if unscaled else figures.paper_scale(record["size"]["height"],
                                                     record["size"]["width"])
    assert record["content_weight_scale"] == scale and (scale > 1) != unscaled
    (config,) = configs
    assert config.content_weight == pytest.approx(2e-3 * 1000 * scale)
    assert config.style_weight == 1000 and config.style == (str(style),)
    assert config.iterations == figures.FIGURES["fig3"].iterations
    run = next(p for p in record["panels"] if p["kind"] == "run")
    assert run["label"] == "waves" and run["config"]["content_weight"] == config.content_weight


def test_fig4_defaults_to_five_ratios(tmp_path, fake_runs):
    configs, _ = fake_runs
    output = tmp_path / "fig4.png"
    assert figures.main(["fig4", "--size", str(SIZE), "--output", str(output), "--quiet"]) == 0
    assert len(configs) == 25
    record = json.loads(output.with_suffix(".json").read_text())
    assert record["grid"]["column_labels"] == [figures.ratio_label(r)
                                               for r in figures.DEFAULT_RATIOS]
    scale = record["content_weight_scale"]
    assert sorted({c.content_weight / c.style_weight / scale for c in configs}) == \
        pytest.approx(sorted(figures.DEFAULT_RATIOS))
    assert all(c.iterations == figures.FIGURES["fig4"].iterations for c in configs)


def test_styles_takes_ratio_and_seeds(tmp_path, fake_runs):
    configs, _ = fake_runs
    output = tmp_path / "styles.png"
    # 48 px: style_loss mrf needs a 3x3 patch at relu5_1 (smaller sizes are refused)
    assert figures.main(["styles", "--ratio", "2e-3", "--seeds", "2", "--size", "48",
                         "--output", str(output), "--quiet"]) == 0
    assert len(configs) == 2 * len(STYLE_LOSSES)
    assert [c.style_loss[0][0] for c in configs] == 2 * list(STYLE_LOSSES)
    assert [c.seed for c in configs] == [0] * len(STYLE_LOSSES) + [1] * len(STYLE_LOSSES)
    assert all(c.iterations == figures.FIGURES["styles"].iterations for c in configs)
    scale = json.loads(output.with_suffix(".json").read_text())["content_weight_scale"]
    alpha = 2e-3 * 1000 * scale  # gram's alpha/beta times its beta: every panel's alpha
    assert [c.content_weight for c in configs] == pytest.approx([alpha] * len(configs))
    assert [c.style_weight for c in configs[:len(STYLE_LOSSES)]] == \
        list(figures.STYLE_LOSS_WEIGHTS.values())
    assert not (tmp_path / "gram.png").exists()  # each panel alone only with --panels


def test_panels_of_any_figure(tmp_path, fake_runs):
    configs, _ = fake_runs
    folder = tmp_path / "runs"
    assert figures.main(["fig4", "--ratios", "1e-3", "--size", str(SIZE), "--iterations", "2",
                         "--output", str(tmp_path / "fig4.png"), "--panels", str(folder),
                         "--quiet"]) == 0
    names = sorted(p.name for p in folder.glob("*.png"))
    assert len(names) == len(configs) == 5
    assert "relu1_1_to_relu3_1_alpha_beta_1e-3.png" in names
    alone = json.loads((folder / "relu1_1_alpha_beta_1e-3.json").read_text())
    assert alone["config"]["style_layers"] == {"relu1_1": 1.0}
    assert alone["figure"]["label"] == "relu1_1, alpha/beta = 1e-3"


def test_panels_that_would_share_a_file_are_refused(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = write_image(tmp_path / "a" / "x.png"), write_image(tmp_path / "b" / "x.png")
    one_line_exit_2(capsys, ["fig3", "--style", str(a), "--style", str(b), "--panels",
                             str(tmp_path / "runs"), "--output", str(tmp_path / "f.png")],
                    "--panels: panel 'x' would be written to", "as panel 'x' is")
    assert not (tmp_path / "f.png").exists()


def test_paper_size_and_a_stopped_panel(tmp_path, fake_runs, capsys):
    configs, state = fake_runs
    state["stopped"] = "the loss became NaN"
    output = tmp_path / "sheet.png"
    assert figures.main(["fig6", "--paper", "--seeds", "1", "--output", str(output)]) == 1
    assert all(c.size == 512 and c.iterations == 500 for c in configs) and len(configs) == 3
    err = capsys.readouterr().err
    assert "panel 'from the content' stopped: the loss became NaN" in err
    record = json.loads(output.with_suffix(".json").read_text())
    assert record["content_weight_scale"] == 1.0 and output.is_file()
    assert all(p["stopped"] for p in record["panels"] if p["kind"] == "run")


def write_image(path: Path, shape: tuple[int, int] = (40, 60)) -> Path:
    pixels = (np.random.default_rng(1).random((*shape, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["fig2"], ["invalid choice: 'fig2'", "--help"]),
        ([], ["required: NAME"]),
        (["fig1", "--ratios", "1e-3"], ["fig1 does not take --ratios (it is for fig4)"]),
        (["fig4", "--ratio", "1e-3"],
         ["fig4 does not take --ratio (it is for fig3, fig6 and styles)"]),
        (["fig3", "--seeds", "2"], ["fig3 does not take --seeds (it is for fig6 and styles)"]),
        (["styles", "--ratios", "1e-3"], ["styles does not take --ratios (it is for fig4)"]),
        (["fig4", "--ratios", "0"], ["alpha/beta must be a positive number, got 0.0"]),
        (["fig6", "--ratio", "nan"], ["alpha/beta must be a positive number, got nan"]),
        (["fig6", "--seeds", "0"], ["--seeds must be at least 1"]),
        (["fig1", "--ratios", "x"], ["invalid float value: 'x'"]),
        (["fig1", "--size", "16"], ["16 px is too small", "at least 32"]),
        (["fig1", "--paper", "--size", "64"], ["not allowed with argument"]),
        (["fig1", "--iterations", "0"], ["'iterations'", "at least 1"]),
        (["fig1", "--content", "no/such/photo.jpg"], ["image not found: no/such/photo.jpg"]),
        (["fig1", "--output", "sheet.jpg"], ["must end in .png"]),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv, fragments, capsys):
    one_line_exit_2(capsys, argv, *fragments)


def test_several_styles_only_for_fig3(tmp_path, capsys):
    a, b = write_image(tmp_path / "a.png"), write_image(tmp_path / "b.png")
    one_line_exit_2(capsys, ["fig4", "--style", str(a), "--style", str(b)],
                    "fig4 does not take --style more than once (it is for fig3)")
    one_line_exit_2(capsys, ["styles", "--style", str(a), "--style", str(b)],
                    "styles does not take --style more than once (it is for fig3)")


def test_weights_are_passed_to_the_loader(tmp_path, capsys):
    missing = tmp_path / "none.h5"
    one_line_exit_2(capsys, ["fig6", "--size", str(SIZE), "--weights", str(missing),
                             "--output", str(tmp_path / "f.png")], f"{missing} does not exist")
    assert not (tmp_path / "f.png").exists()


def test_help_lists_every_figure(capsys):
    with pytest.raises(SystemExit) as done:
        figures.main(["--help"])
    assert done.value.code == 0
    words = " ".join(capsys.readouterr().out.split())
    for name, figure in figures.FIGURES.items():
        assert f"{name} {figure.about} [default: {figure.iterations} iterations]" in words
