"""The command line, in a subprocess as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jstyle.config import FIELDS
from jstyle.options import STYLE_LOSSES
from tests.helpers import file_loss

ROOT = Path(__file__).resolve().parents[1]


def jstyle(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # A run as users start it: its programs kept and reused across these runs (conftest
    # turns them off only for this process, whose tests patch jstyle's functions).
    base = {k: v for k, v in os.environ.items() if k != "JSTYLE_PROGRAMS"}
    return subprocess.run(
        [sys.executable, "-m", "jstyle.run", *args],
        capture_output=True, text=True, cwd=cwd, env={**base, **(env or {})}, timeout=600,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jstyle: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_explains_every_key():
    proc = jstyle("--help")
    assert proc.returncode == 0
    for key in FIELDS:
        assert f"\n  {key} " in proc.stdout, key
    assert "--set KEY=VALUE" in proc.stdout


HEAVY = ("jax", "jaxlib", "flax", "optax", "jaxopt", "h5py")


@pytest.mark.parametrize("argv", [["--help"], ["--set", "size=0"],
                                  ["--config", "configs/paper.yaml", "--set", "pooling=min"]])
def test_help_and_config_errors_import_no_jax(argv):
    """``--help`` and a bad config answer before JAX (or Flax, optax, h5py) is imported."""
    code = (f"import sys\nfrom jstyle import run\ntry:\n    code = run.main({argv!r})\n"
            "except SystemExit as e:\n    code = e.code\n"
            f"print(code, sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] in ("0 []", "2 []"), proc.stdout + proc.stderr


#: A network two blocks deep: the interrupt tests' runs compile in a fraction of the time.
SHALLOW = ["--set", "content_layers=[relu2_2]", "--set", "style_layers=[relu1_1, relu2_1]"]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo with space é.png"
    Image.fromarray((np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)).save(
        path)
    return path


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--content", "no/such/photo.jpg"], ["image not found: no/such/photo.jpg"]),
        (["--style", "."], ["is a folder, not an image file"]),
        (["--set", "sise=256"], ["unknown config key 'sise'", "did you mean 'size'"]),
        (["--set", "style_layers=[relu1_1, relu6_1]"], ["unknown layer 'relu6_1'", "valid layers"]),
        (["--config", "no/such.yaml"], ["config file not found"]),
        (["--set", "size"], ["--set expects key=value"]),
        (["--output", "out.jpg"], ["must end in .png"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragments, tmp_path):
    assert_one_line_error(jstyle(*args, "--set", "iterations=1", cwd=ROOT), *fragments)


def test_text_file_named_jpg(tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("not an image")
    assert_one_line_error(jstyle("--content", str(fake)), "is not an image Pillow can read")


def test_output_must_not_overwrite_an_input(photo):
    assert_one_line_error(jstyle("--content", str(photo), "--output", str(photo)),
                          "is one of the input images")


def test_missing_explicit_weights_file(tmp_path, photo):
    proc = jstyle("--content", str(photo), "--set", f"weights={tmp_path / 'none.h5'}",
                  "--output", str(tmp_path / "o.png"))
    assert_one_line_error(proc, "does not exist; create it with:", "convert_vgg_weights.py")


def test_a_run_writes_png_and_sidecar(real_weights, tmp_path, photo):
    out = tmp_path / "sub" / "result.png"
    proc = jstyle(
        "--config", "configs/paper.yaml", "--content", str(photo), "--output", str(out),
        "--set", "size=48", "--set", "iterations=6", "--set", "save_every=3",
        env={"JSTYLE_WEIGHTS": str(real_weights.path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "stylizing" in proc.stderr  # the progress bar
    image = Image.open(out)
    assert image.size == (48, 32) and image.mode == "RGB"
    assert json.loads(image.text["jstyle:config"])["size"] == 48
    assert (tmp_path / "sub" / "result_00003.png").is_file()
    assert Image.open(tmp_path / "sub" / "result.loss.png").size == (640, 400)
    gif = Image.open(tmp_path / "sub" / "result_progress.gif")
    assert gif.n_frames == 2 and gif.size == (48, 32)  # iteration 3 and the end
    assert (tmp_path / "sub" / "result_progress.png").is_file()
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["iterations"] == 6
    assert record["config"]["style"] == []
    assert record["inputs"]["style"] == ["default:swirl_painting"]
    assert len(record["history"]) == 6
    assert [t["iteration"] for t in record["terms_history"]][-1] == 6
    assert set(record["losses"]) >= {"total", "content", "style", "style/relu1_1",
                                     "content/relu4_2"}
    assert record["timings"]["compile_s"] > 0 and record["timings"]["optimize_s"] > 0
    assert record["jax"]["backend"] == "cpu"
    weights = record["weights"]  # paper.yaml: the normalised network, beside the base file
    assert weights["variant"] == "vgg19-normalized" and weights["calibration"]
    assert Path(weights["path"]) == real_weights.path.with_name("vgg19-normalized.h5")
    assert not list(out.parent.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_later_overrides_win(tmp_path, real_weights):
    out = tmp_path / "a.png"
    proc = jstyle("--set", "size=40", "--set", "size=32", "--set", "iterations=1",
                  "--set", "optimizer=adam", "--output", str(out), "--quiet",
                  env={"JSTYLE_WEIGHTS": str(real_weights.path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert max(Image.open(out).size) == 32


def test_overrides_apply_in_command_line_order():
    from jstyle.run import load_config, parser

    def config(*argv):
        return load_config(parser().parse_args(list(argv)))

    assert config("--style", "a.jpg", "--set", "size=64", "--style", "b.jpg").style == (
        "a.jpg", "b.jpg")
    assert config("--style", "a.jpg", "--set", "style=c.jpg").style == ("c.jpg",)
    assert config("--set", "style=c.jpg", "--style", "a.jpg").style == ("a.jpg",)
    assert config("--config", str(ROOT / "configs" / "quick.yaml"), "--set", "size=100").size == 100
    assert config("--config", str(ROOT / "configs" / "quick.yaml")).size == 256


def _start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jstyle.run", *args], cwd=ROOT, text=True,
                            stderr=subprocess.PIPE, env={**os.environ, **env})


def _interrupt_when(args: list[str], env: dict, marker: str, sig: str = "SIGINT") -> str:
    """Start a run, send ``sig`` once its stderr shows ``marker``; its stderr."""
    import signal

    proc = _start(args, env)
    seen = ""
    while proc.poll() is None and marker not in seen:
        seen += proc.stderr.read(1)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, seen + err
    return seen + err


#: Each phase of a run: its settings, the stderr line after which the signal is sent (a
#: coarse stage's or a batch image's line comes before it compiles, so the stop lands before
#: its first chunk), the phase the sidecar must name, and the outputs (batch: one per photo).
PHASES = {
    "plain run": ([], "| 1/20 [", "full size", None),
    "coarse stage": (["coarse_sizes=[32]", "coarse_iterations=20", "preserve_color=luminance"],
                     "coarse stage 1/1", "coarse stage 1/1", None),
    # (the coarse stage's own bar counts to 10: "| 1/20 [" is the full size's)
    "full size after a coarse stage": (["coarse_sizes=[32]", "coarse_iterations=10",
                                        "preserve_color=luminance"], "| 1/20 [", "full size",
                                       None),
    "batch image 2": ([], "image 2/2", "full size", "ab"),
    "data-parallel batch": (["sharding=batch", "save_every=5"], "| 1/20 [", "full size", "ab"),
    "spatial": (["sharding=spatial", "save_every=5"], "| 1/20 [", "full size", None),
}


def _phase_run(phase: str, images: Path, output: Path) -> list[str]:
    settings, _, _, batch = PHASES[phase]
    content = images / "folder" if batch else images / "photo.png"
    args = ["--content", str(content), "--output", str(output), "--set", "size=48",
            "--set", "iterations=20", *SHALLOW]
    for setting in settings:
        args += ["--set", setting]
    return args


def _phase_env(real_weights, phase: str) -> dict:
    env = {"JSTYLE_WEIGHTS": str(real_weights.path)}
    if phase == "spatial":  # the rows of a 48x32 image over 2 fake devices
        env.update(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    return env


def _sidecars(output: Path, phase: str) -> list[Path]:
    batch = PHASES[phase][3]
    return [output.with_suffix(".json")] if not batch else \
        [output.with_suffix("") / f"{name}.json" for name in batch]


@pytest.fixture(scope="module")
def phase_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("phase_images")
    rng = np.random.default_rng(6)
    (folder / "folder").mkdir()
    for path in (folder / "photo.png", folder / "folder" / "a.png", folder / "folder" / "b.png"):
        Image.fromarray((rng.random((32, 48, 3)) * 255).astype(np.uint8)).save(path)
    return folder


@pytest.fixture(scope="module")
def uninterrupted(real_weights, phase_images, tmp_path_factory):
    """Each phase's run, never interrupted (made once, for both signals)."""
    made: dict[str, Path] = {}

    def run(phase: str) -> Path:
        if phase not in made:
            output = tmp_path_factory.mktemp("whole") / "whole.png"
            proc = jstyle(*_phase_run(phase, phase_images, output), "--quiet",
                          env=_phase_env(real_weights, phase))
            assert proc.returncode == 0, proc.stderr
            made[phase] = output
        return made[phase]
    return run


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", list(PHASES))
def test_a_run_interrupted_in_any_phase_resumes_to_the_uninterrupted_image(
        real_weights, phase_images, uninterrupted, tmp_path, phase, sig):
    """Every phase, SIGINT and SIGTERM: exit 130, a PNG at the size its sidecar names (a
    coarse stage's upsampled, its colours restored), the phase named, and --resume ends at
    the image of a run never interrupted."""
    env = _phase_env(real_weights, phase)
    out = tmp_path / "stopped.png"
    args = _phase_run(phase, phase_images, out)
    err = _interrupt_when(args, env, PHASES[phase][1], sig)
    assert "Traceback" not in err and "--resume" in err
    stopped = [json.loads(p.read_text()) for p in _sidecars(out, phase)]
    incomplete = [r for r in stopped if "incomplete" in r]
    assert incomplete and all(r["incomplete"]["phase_name"] == PHASES[phase][2]
                              for r in incomplete)
    for path, record in zip(_sidecars(out, phase), stopped, strict=True):
        png = Image.open(path.with_suffix(".png"))
        assert png.size == (record["size"]["width"], record["size"]["height"]) == (48, 32)
        assert np.asarray(png).std() > 0  # not a grey coarse image
        if "incomplete" in record:  # the exact image and the optimiser's state, to go on from
            with np.load(path.with_suffix(".resume.npz")) as saved:
                assert np.isfinite(saved["image"]).all() and "state_0" in saved
    proc = jstyle(*args, "--resume", "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    whole = uninterrupted(phase)
    for mine, theirs in zip(_sidecars(out, phase), _sidecars(whole, phase), strict=True):
        resumed, reference = (json.loads(p.read_text()) for p in (mine, theirs))
        assert "incomplete" not in resumed
        np.testing.assert_allclose(resumed["history"], reference["history"], rtol=1e-4)
        for a, b in zip(resumed["coarse_stages"], reference["coarse_stages"], strict=True):
            np.testing.assert_allclose(a["history"], b["history"], rtol=1e-4)
        a, b = (np.asarray(Image.open(p.with_suffix(".png")), np.float32) for p in (mine, theirs))
        assert np.abs(a - b).max() <= 1  # the same image, to the 8-bit rounding
        if "save_every=5" in PHASES[phase][0]:  # no frame skipped across the resume
            frames = sorted(p.name for p in mine.parent.glob(f"{mine.stem}_0*.png"))
            assert frames == [f"{mine.stem}_{i:05d}.png" for i in (5, 10, 15)]


@pytest.fixture(scope="module")
def poisoned_weights(real_weights, tmp_path_factory) -> Path:
    """The real network with conv1_1 scaled by 1e20: its Gram matrices overflow float32, so
    the loss is infinite from the first evaluation in whichever phase uses it."""
    from jstyle.weights.store import LICENSE, load_weights, save_weights

    weights = load_weights(real_weights.path)
    params = {k: dict(v) for k, v in weights.params.items()}
    params["conv1_1"]["kernel"] = params["conv1_1"]["kernel"] * 1e20
    path = tmp_path_factory.mktemp("poisoned") / "poisoned.h5"
    save_weights(path, params, weights.preprocessing,
                 {"source": "test", "source_file": "none", "source_sha256": "0" * 64,
                  "license": LICENSE, "converter_version": "1"})
    return path


@pytest.mark.parametrize("phase", list(PHASES))
def test_a_non_finite_loss_in_any_phase_keeps_its_last_finite_image(
        real_weights, poisoned_weights, phase_images, tmp_path, phase):
    """A poisoned network in each phase: exit code 1, the phase named, and the last finite
    image saved at the size its sidecar names. The full size after a coarse stage is
    poisoned by resuming an interrupted run on the poisoned file ($JSTYLE_WEIGHTS)."""
    out = tmp_path / "poisoned.png"
    args = _phase_run(phase, phase_images, out)
    env = {**_phase_env(real_weights, phase), "JSTYLE_WEIGHTS": str(poisoned_weights)}
    if phase == "full size after a coarse stage":
        _interrupt_when(args, _phase_env(real_weights, phase), PHASES[phase][1])
        args = [*args, "--resume"]
    proc = jstyle(*args, "--quiet", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "the loss became NaN or infinite" in proc.stderr and "Traceback" not in proc.stderr
    for path in _sidecars(out, phase):
        record = json.loads(path.read_text())
        assert record["incomplete"]["phase_name"] == PHASES[phase][2]
        png = Image.open(path.with_suffix(".png"))
        assert png.size == (record["size"]["width"], record["size"]["height"]) == (48, 32)


def test_resume_refuses_other_settings_or_nothing(real_weights, tmp_path, photo):
    out = tmp_path / "none.png"
    env = {"JSTYLE_WEIGHTS": str(real_weights.path)}
    assert_one_line_error(jstyle("--content", str(photo), "--output", str(out), "--resume",
                                 env=env), "nothing to resume")
    out.with_suffix(".json").write_text(json.dumps(
        {"config": {"size": 1}, "incomplete": {"iteration": 3}, "history": [1.0] * 3}))
    assert_one_line_error(jstyle("--content", str(photo), "--output", str(out), "--resume",
                                 env=env), "made with other settings")


def test_a_size_too_large_for_memory_fails_before_resizing(photo):
    proc = jstyle("--content", str(photo), "--set", "size=200000")
    assert_one_line_error(proc, "GiB of memory but", "use a smaller size (about")


def test_an_extreme_aspect_ratio_names_the_minimum(tmp_path):
    strip = tmp_path / "strip.png"
    Image.new("RGB", (600, 12), "white").save(strip)
    assert_one_line_error(jstyle("--content", str(strip), "--set", "size=256"),
                          "too small for the deepest requested layer", "at least 16 px")


def test_a_run_stopped_by_a_non_finite_loss_keeps_its_image(real_weights, tmp_path, photo,
                                                            monkeypatch, capsys):
    """The CLI side of the NaN guard (the guard itself: tests/test_objective.py)."""
    from jstyle import run, transfer

    reason = ("the loss became NaN or infinite at iteration 4 (in: style/relu1_1); kept the "
              "image of iteration 3")

    def stopped_run(params, content, styles, objective, solver, **kw):
        return transfer.Result(np.full(content.shape, 0.5, np.float32), {"total": 1.0},
                               [3.0, 2.0, 1.0], 3, {"optimize_s": 0.1}, reason)

    monkeypatch.setattr(transfer, "stylize", stopped_run)
    monkeypatch.setenv("JSTYLE_WEIGHTS", str(real_weights.path))
    out = tmp_path / "nan.png"
    code = run.main(["--content", str(photo), "--output", str(out), "--set", "size=48",
                     "--quiet"])
    assert code == 1
    assert "stopped: the loss became NaN" in capsys.readouterr().err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["incomplete"] == {"reason": reason, "iteration": 3, "phase": 0,
                                    "phase_name": "full size"}
    assert np.asarray(Image.open(out)).mean() == pytest.approx(128, abs=1)
    assert out.with_suffix(".resume.npz").is_file()


def test_an_unwritable_output_folder_is_reported_before_the_run(tmp_path, photo, monkeypatch,
                                                                capsys):
    from jstyle import run

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "touch", refuse)
    code = run.main(["--content", str(photo), "--output", str(tmp_path / "new" / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and "is not writable: Permission denied" in err
    assert (tmp_path / "new").is_dir()  # the missing folder itself was created


def test_from_image_redoes_a_run_with_two_blended_styles(real_weights, tmp_path, photo):
    style = tmp_path / "style.png"
    Image.fromarray((np.random.default_rng(1).random((30, 30, 3)) * 255).astype(np.uint8)).save(
        style)
    out = tmp_path / "blend.png"
    env = {"JSTYLE_WEIGHTS": str(real_weights.path)}
    first = jstyle("--content", str(photo), "--style", str(style), "--style", str(photo),
                   "--set", "style_blend_weights=[3, 1]", "--set", "size=32",
                   "--set", "iterations=3", "--output", str(out), "--quiet", *SHALLOW,
                   env=env)
    assert first.returncode == 0, first.stderr
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["style_blend_weights"] == [3.0, 1.0]

    again = jstyle("--from-image", str(out), "--quiet", env=env)
    assert again.returncode == 0, again.stderr
    redo = tmp_path / "blend_reproduced.png"
    redone = json.loads(redo.with_suffix(".json").read_text())
    assert {**redone["config"], "output": None} == {**record["config"], "output": None}
    np.testing.assert_allclose(redone["history"], record["history"], rtol=1e-4)
    assert_one_line_error(jstyle("--from-image", str(photo)), "carries no jstyle config")


def test_a_batch_writes_one_output_per_image_and_resumes(real_weights, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(2)
    for name, size in (("a.png", (48, 32)), ("b.jpg", (48, 32)), ("c.png", (32, 48))):
        Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(
            photos / name)
    (photos / "notes.txt").write_text("not an image")
    env = {"JSTYLE_WEIGHTS": str(real_weights.path)}
    out = tmp_path / "out" / "batch.png"
    args = ["--content", str(photos), "--output", str(out), "--set", "size=32",
            "--set", "iterations=2", *SHALLOW]
    proc = jstyle(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "image 3/3" in proc.stderr
    records = {n: json.loads((tmp_path / "out" / "batch" / f"{n}.json").read_text())
               for n in "abc"}
    assert all(Image.open(tmp_path / "out" / "batch" / f"{n}.png").size in ((32, 21), (21, 32))
               for n in "abc")
    # b is a's size: it reused a's compiled program.
    assert records["b"]["timings"]["compile_s"] < 0.5 * records["a"]["timings"]["compile_s"]

    again = jstyle(*args, "--resume", env=env)
    assert again.returncode == 0 and again.stderr.count("is done") == 3, again.stderr
    glob_run = jstyle("--content", str(photos / "*.png"), "--output", str(tmp_path / "g.png"),
                      "--set", "size=32", "--set", "iterations=1", "--quiet", env=env)
    assert glob_run.returncode == 0, glob_run.stderr
    assert sorted(p.name for p in (tmp_path / "g").glob("*.json")) == ["a.json", "c.json"]
    assert_one_line_error(jstyle("--content", str(tmp_path / "none*.jpg")), "no images in pattern")


def test_coarse_to_fine_run(real_weights, tmp_path, photo):
    out = tmp_path / "multi.png"
    proc = jstyle("--content", str(photo), "--output", str(out), "--set", "size=64",
                  "--set", "coarse_sizes=[32]", "--set", "coarse_iterations=2",
                  "--set", "iterations=2", *SHALLOW,
                  env={"JSTYLE_WEIGHTS": str(real_weights.path)})
    assert proc.returncode == 0, proc.stderr
    assert "coarse stage 1/1: 32x22 px, 2 iterations" in proc.stderr
    record = json.loads(out.with_suffix(".json").read_text())
    assert [s["size"] for s in record["coarse_stages"]] == [32]
    assert Image.open(out).size == (64, 43)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
@pytest.mark.parametrize("coarse", [False, True], ids=["one-stage", "coarse-to-fine"])
def test_the_saved_png_has_the_reported_loss(real_weights, tmp_path, photo, optimizer, coarse):
    """The loss a run reports is the loss of the image the user gets: the PNG, read back and
    evaluated afresh, within 1% of the sidecar's final loss; the sidecar's delivered loss is
    the PNG's exactly; the pixels never left [0, 1], so nothing was clipped."""
    out = tmp_path / f"{optimizer}.png"
    args = ["--config", "configs/paper.yaml", "--content", str(photo), "--output", str(out),
            "--set", "size=64", "--set", "iterations=30", "--set", f"optimizer={optimizer}",
            "--quiet", *SHALLOW]  # the paper's config on two blocks: the same check, faster
    if coarse:
        args += ["--set", "coarse_sizes=[48]", "--set", "coarse_iterations=10"]
    proc = jstyle(*args, env={"JSTYLE_WEIGHTS": str(real_weights.path)})
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.with_suffix(".json").read_text())
    png = file_loss(out, record)
    assert png == pytest.approx(record["losses"]["total"], rel=0.01)
    assert png == pytest.approx(record["delivered_losses"]["total"], rel=1e-4)
    assert len(record["evaluations_per_iteration"]) == 30
    assert record["evaluations"] == sum(record["evaluations_per_iteration"]) + (
        optimizer == "lbfgs")
    if coarse:
        assert record["coarse_stages"][0]["delivered_loss"] > 0


def test_a_resume_file_with_another_optimisers_state_continues_from_its_image(capsys, tmp_path):
    """A resume file whose optimiser state does not fit this run's (another optimiser, or
    another jstyle version's L-BFGS) is not refused: the run continues from its image with
    a fresh history, and says so."""
    import jax

    from jstyle import run
    from jstyle.outputs import SavedPoint

    template = {"s": np.zeros((2, 4, 4, 3), np.float32), "count": np.zeros((), np.int32)}
    old = {"s": np.zeros((2, 4, 4, 3), np.float32)}
    saved = SavedPoint(0, 5, np.zeros((4, 4, 3), np.float32), jax.tree.leaves(old),
                       str(jax.tree.structure(old)))
    assert run._restored_state(saved, template, tmp_path / "out.png") is None
    assert "continuing from its image" in capsys.readouterr().err
    matching = SavedPoint(0, 5, saved.image, jax.tree.leaves(template),
                          str(jax.tree.structure(template)))
    assert run._restored_state(matching, template, tmp_path / "out.png") is not None


@pytest.mark.parametrize("loss", STYLE_LOSSES)
def test_every_style_loss_runs_from_the_command_line(real_weights, tmp_path, photo, loss,
                                                     monkeypatch, capsys):
    from jstyle import run

    monkeypatch.setenv("JSTYLE_WEIGHTS", str(real_weights.path))
    out = tmp_path / f"{loss}.png"
    code = run.main(["--content", str(photo), "--output", str(out), "--set", "size=32",
                     "--set", "iterations=3", "--set", f"style_loss={loss}",
                     "--set", "content_layers=[relu2_2]",
                     "--set", "style_layers=[relu1_1, relu2_1, relu3_1]", "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["style_loss"] == {loss: 1.0}
    history = record["history"]
    assert len(history) == 3 and history[-1] < history[0]
    assert all(np.isfinite(v) for v in record["delivered_losses"].values())


def test_a_tiled_run_resumed_ends_where_a_whole_image_run_does(real_weights, phase_images,
                                                               tmp_path):
    """tile_size through the command line: interrupted and resumed, a run in tiles ends at
    the loss and image of the same run on the whole image, and its sidecar names its tiles."""
    env = {"JSTYLE_WEIGHTS": str(real_weights.path)}
    common = ["--content", str(phase_images / "photo.png"), "--set", "size=160",
              "--set", "iterations=12", *SHALLOW, "--quiet"]
    whole, tiled = tmp_path / "whole.png", tmp_path / "tiled.png"
    proc = jstyle(*common, "--output", str(whole), "--set", "tile_size=0", env=env)
    assert proc.returncode == 0, proc.stderr
    args = [*common[:-1], "--output", str(tiled), "--set", "tile_size=64"]
    _interrupt_when(args, env, "| 1/12 [")
    proc = jstyle(*args, "--resume", "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    a, b = (json.loads(p.with_suffix(".json").read_text()) for p in (whole, tiled))
    assert b["tiling"]["tile_size"] == 64 and b["tiling"]["tiles"] == 6
    assert a["tiling"]["tiles"] == 1
    np.testing.assert_allclose(b["history"], a["history"], rtol=1e-3)
    assert b["delivered_losses"]["total"] == pytest.approx(a["delivered_losses"]["total"],
                                                           rel=1e-3)
    x, y = (np.asarray(Image.open(p), np.float32) for p in (whole, tiled))
    assert np.abs(x - y).max() <= 2
