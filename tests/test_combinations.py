"""What combines with what: every cell of the README's table, run through the command line
(in this process, on the real weights, tiny images): a cell that works runs to exit code 0,
a refused one is one line and exit code 2 before anything compiles. (A non-finite loss in
each mode and phase: tests/test_cli.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

MODES = ("none", "batch", "spatial")
#: The README's table: feature -> (its settings, one cell per sharding mode: "ok" or the
#: fragment of the refusal).
CELLS = {
    "coarse_sizes": (["coarse_sizes=[32]", "coarse_iterations=1"],
                     ("ok", "batch sharding runs at one size", "ok")),
    "masks": ([], ("ok", "spatial control (masks) runs on one device",
                   "spatial control (masks) runs on one device")),
    "preserve_color": (["preserve_color=luminance"],
                       ("ok", "batch sharding shares one style target", "ok")),
    "style_blend_weights": (["style_blend_weights=[3, 1]"], ("ok", "ok", "ok")),
    "save_every": (["save_every=1"], ("ok", "ok", "ok")),
    "--resume": ([], ("ok", "ok", "ok")),
    "optimizer: adam": (["optimizer=adam"], ("ok", "ok", "ok")),
    "precision: bfloat16": (["precision=bfloat16"], ("ok", "ok", "ok")),
    "style_loss: sliced_wasserstein, redraw_every: 1": (
        ["style_loss=sliced_wasserstein", "redraw_every=1"], ("ok", "ok", "ok")),
    "balance: auto": (["balance=auto"], ("ok", "balance: auto measures alpha per photo",
                                         "ok")),
    "tile_size: 64": (["tile_size=64"], ("ok", "ok", "ok")),
}
COMMON = ["--set", "size=48", "--set", "iterations=2", "--set", "content_layers=[relu2_2]",
          "--set", "style_layers=[relu1_1, relu2_1]", "--quiet"]


def test_the_readme_table_is_this_table():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### What combines with what"):]
    rows = {}
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = tuple("ok" if c.startswith("✓") else c
                                              for c in cells[1:])
    assert set(rows) == set(CELLS)
    for name, (_, cells) in CELLS.items():
        for mode, readme, expected in zip(MODES, rows[name], cells, strict=True):
            assert (readme == "ok") == (expected == "ok"), (name, mode)
            if expected != "ok":
                assert readme.startswith("refused"), (name, mode)


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(4)
    out = {}
    for name in ("photo", "style_a", "style_b"):
        out[name] = tmp_path / f"{name}.png"
        Image.fromarray((rng.random((32, 48, 3)) * 255).astype(np.uint8)).save(out[name])
    left = np.zeros((32, 48), np.uint8)
    left[:, :24] = 255
    for name, mask in (("left", left), ("right", 255 - left)):
        out[name] = tmp_path / f"{name}.png"
        Image.fromarray(mask).save(out[name])
    (tmp_path / "folder").mkdir()
    for name in ("a", "b"):
        Image.fromarray((rng.random((32, 48, 3)) * 255).astype(np.uint8)).save(
            tmp_path / "folder" / f"{name}.png")
    return out


def _argv(feature: str, mode: str, images: dict[str, Path], output: Path) -> list[str]:
    settings, _ = CELLS[feature]
    content = images["photo"].parent / "folder" if mode == "batch" else images["photo"]
    argv = ["--content", str(content), "--style", str(images["style_a"]),
            "--output", str(output), "--set", f"sharding={mode}", *COMMON]
    if feature in ("masks", "style_blend_weights"):
        argv += ["--style", str(images["style_b"])]
    if feature == "masks":
        argv += ["--mask", str(images["left"]), "--mask", str(images["right"])]
    for setting in settings:
        argv += ["--set", setting]
    return argv


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("feature", sorted(CELLS))
def test_each_combination_runs_or_is_refused_before_compiling(real_weights, images, tmp_path,
                                                              monkeypatch, capsys, feature,
                                                              mode):
    from jstyle import engine, run

    monkeypatch.setenv("JSTYLE_WEIGHTS", str(real_weights.path))
    expected = CELLS[feature][1][MODES.index(mode)]
    output = tmp_path / "out.png"
    argv = _argv(feature, mode, images, output)
    compiled = []
    real_optimise = engine.optimise
    monkeypatch.setattr(engine, "optimise", lambda *a, **k: compiled.append(1)
                        or real_optimise(*a, **k))
    if expected != "ok":
        assert run.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("jstyle: error: ") and expected in err and err.count("\n") == 1
        assert not compiled  # refused before anything ran
        return
    if feature == "--resume":  # stopped after its first chunk, then continued
        whole = tmp_path / "whole.png"
        assert run.main(_argv(feature, mode, images, whole)) == 0, capsys.readouterr().err
        checks = []
        real_check = engine.check_stop

        def stop_after_a_chunk():
            checks.append(1)
            if len(checks) == 3:  # after the targets, the compilation and one chunk
                raise KeyboardInterrupt
            real_check()

        monkeypatch.setattr(engine, "check_stop", stop_after_a_chunk)
        assert run.main(argv) == 130, capsys.readouterr().err
        monkeypatch.setattr(engine, "check_stop", real_check)
        argv = [*argv, "--resume"]
    assert run.main(argv) == 0, capsys.readouterr().err
    sidecars = [output.with_suffix(".json")] if mode != "batch" else \
        sorted((tmp_path / "out").glob("*.json"))
    assert sidecars
    for sidecar in sidecars:
        record = json.loads(sidecar.read_text())
        assert "incomplete" not in record and len(record["history"]) == 2
        if feature == "save_every":
            assert Path(str(sidecar).replace(".json", "_00001.png")).is_file()
        if feature == "balance: auto":
            assert record["balance"]["content_weight"] > 0
        if feature == "precision: bfloat16":  # what ran is said; a CPU splits float32 rows
            assert record["precision"]["requested"] == "bfloat16"
            if mode == "spatial":
                assert record["precision"]["used"] == "float32"
        if feature == "--resume":  # ends where the uninterrupted run ends
            uninterrupted = json.loads(Path(str(sidecar).replace(
                str(tmp_path / "out"), str(tmp_path / "whole"))).read_text())
            np.testing.assert_allclose(record["history"], uninterrupted["history"], rtol=1e-4)
