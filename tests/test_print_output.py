"""Output for printing, end to end: each output_format's file (8 or 16 bits per channel, PNG
or TIFF), the content photo's ICC profile and DPI carried into it and into its frames, the
sidecar's account of it, its delivered loss that of the file itself, and ``--from-image``
from it. The runs use a random network saved as a weights file: no download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from jstyle import run
from jstyle.images import read_image, to_array
from tests.helpers import file_loss

#: A network two blocks deep, at 32 px: each run compiles in a few seconds.
SMALL = ["--set", "size=32", "--set", "content_layers=[relu2_2]",
         "--set", "style_layers=[relu1_1, relu2_1]", "--quiet"]


@pytest.fixture(scope="module")
def fake_weights(random_params, tmp_path_factory) -> Path:
    """The tests' random VGG-19 as a jstyle weights file."""
    from jstyle.preprocessing import CAFFE
    from jstyle.weights.store import LICENSE, save_weights

    params = {k: {n: np.asarray(v) for n, v in layer.items()} for k, layer in
              random_params.items()}
    path = tmp_path_factory.mktemp("weights") / "random.h5"
    save_weights(path, params, CAFFE, {"source": "test", "source_file": "none",
                                       "source_sha256": "0" * 64, "license": LICENSE,
                                       "converter_version": "1"})
    return path


@pytest.fixture
def icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture
def photo(tmp_path: Path, icc: bytes) -> Path:
    """A photo with an ICC profile and 300 DPI."""
    path = tmp_path / "photo.png"
    pixels = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, icc_profile=icc, dpi=(300, 300))
    return path


def _bits(path: Path) -> int:
    """Bits per channel of a PNG (its IHDR) or TIFF (BitsPerSample)."""
    if path.suffix == ".png":
        return path.read_bytes()[24]
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        return tiff.pages[0].bitspersample


@pytest.mark.parametrize(("name", "args", "fmt", "bits"), [
    ("out.png", [], "png8", 8),
    ("out.png", ["--set", "output_format=png16"], "png16", 16),
    ("out.tif", [], "tiff16", 16),
])
def test_each_format_carries_the_photo_and_redoes_from_its_file(
        fake_weights, photo, icc, tmp_path, capsys, name, args, fmt, bits):
    out = tmp_path / name
    code = run.main(["--content", str(photo), "--output", str(out), "--set", "iterations=3",
                     "--set", "save_every=2", "--set", f"weights={fake_weights}", *args,
                     *SMALL])
    assert code == 0, capsys.readouterr().err
    assert _bits(out) == bits
    frame = out.with_name(f"out_00002{out.suffix}")
    assert _bits(frame) == bits
    for path in (out, frame):
        with Image.open(path) as image:
            assert image.info["icc_profile"] == icc
            assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["output"]["format"] == fmt and record["output"]["bits"] == bits
    assert record["output"]["icc_profile"]["bytes"] == len(icc)
    assert record["output"]["dpi"] == pytest.approx([300, 300], abs=0.01)
    # The delivered loss is the file's: its 16 (or 8) bits, read back and evaluated afresh.
    assert file_loss(out, record) == pytest.approx(record["delivered_losses"]["total"],
                                                    rel=1e-5)

    code = run.main(["--from-image", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    redo = out.with_name(f"out_reproduced{out.suffix}")
    assert _bits(redo) == bits
    redone = json.loads(redo.with_suffix(".json").read_text())
    assert {**redone["config"], "output": None} == {**record["config"], "output": None}
    assert redone["output"] == record["output"]
    np.testing.assert_allclose(redone["history"], record["history"], rtol=1e-5)


def test_a_batch_writes_each_image_in_the_output_format(fake_weights, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, stem in enumerate("ab"):
        pixels = (np.random.default_rng(i).random((20, 30, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(photos / f"{stem}.png")
    code = run.main(["--content", str(photos), "--output", str(tmp_path / "set.tiff"),
                     "--set", "iterations=1", "--set", f"weights={fake_weights}", *SMALL])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "set").glob("*.tiff")) == ["a.tiff", "b.tiff"]
    record = json.loads((tmp_path / "set" / "a.json").read_text())
    assert record["output"] == {"format": "tiff16", "bits": 16, "icc_profile": None,
                                "dpi": None}  # a photo without them: nothing embedded
    with Image.open(tmp_path / "set" / "a.tiff") as image:
        assert "icc_profile" not in image.info and "dpi" not in image.info


def test_a_16_bit_result_continues_as_the_next_runs_start(fake_weights, tmp_path, capsys):
    """A tiff16 result read as a start image (or a content photo) keeps its 16 bits."""
    first = tmp_path / "first.tif"
    assert run.main(["--output", str(first), "--set", "iterations=1",
                     "--set", f"weights={fake_weights}", *SMALL]) == 0, capsys.readouterr().err
    from jstyle.config import resolve
    from jstyle.inputs import load_inputs

    inputs = load_inputs(resolve({"init": str(first), "content": str(first), "size": 32,
                                  "output": str(tmp_path / "second.tif")}))
    levels = np.unique(np.round(inputs.init * 65535))
    assert not np.allclose(levels / 257, np.round(levels / 257))  # not 8-bit levels
    np.testing.assert_array_equal(inputs.content, to_array(read_image(first, deep=True)))


def test_the_delivered_terms_are_of_the_bit_depth_asked_for(random_params):
    """``delivered_bits`` sets the quantisation the delivered loss is measured at."""
    import jax.numpy as jnp

    from jstyle.objective import compute_targets, loss_terms
    from jstyle.optimize import make_solver
    from jstyle.preprocessing import delivered
    from jstyle.transfer import stylize
    from tests.helpers import PAPER_OBJECTIVE

    rng = np.random.default_rng(3)
    content, style = rng.random((2, 32, 32, 3), dtype=np.float32)
    solver = make_solver("lbfgs")
    targets = compute_targets(random_params, jnp.asarray(content), [jnp.asarray(style)],
                              PAPER_OBJECTIVE)
    result = stylize(random_params, content, [style], PAPER_OBJECTIVE, solver,
                     iterations=2, delivered_bits=16)
    loss = {bits: float(loss_terms(jnp.asarray(delivered(result.image, bits)), random_params,
                                   targets, PAPER_OBJECTIVE)["total"]) for bits in (8, 16)}
    assert result.delivered["total"] == pytest.approx(loss[16], rel=1e-6)
    assert result.delivered["total"] != pytest.approx(loss[8], rel=1e-6)  # 8 bits: 3.6e-5 off
    default = stylize(random_params, content, [style], PAPER_OBJECTIVE, solver, iterations=2)
    assert default.delivered["total"] == pytest.approx(loss[8], rel=1e-6)  # the same image


def test_a_format_that_does_not_fit_the_output_fails_before_anything_runs(tmp_path, capsys):
    code = run.main(["--output", str(tmp_path / "x.png"), "--set", "output_format=tiff16"])
    err = capsys.readouterr().err
    assert code == 2 and "tiff16 writes .tif/.tiff files" in err and "x.tif" in err
    assert not list(tmp_path.iterdir())
