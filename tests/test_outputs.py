"""What a run leaves on disk (jstyle.outputs): the resume file's round trip, its version, and
jstyle 0.2's image-only resume file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jstyle import outputs
from jstyle.errors import JStyleError

CONFIG = {"size": 32, "coarse_sizes": [16]}


def _record(**extra) -> dict:
    return {"config": CONFIG, "history": [3.0, 2.0],
            "incomplete": {"reason": "interrupted", "iteration": 2}, **extra}


def test_an_incomplete_run_round_trips_its_phase_image_and_state(tmp_path):
    out = tmp_path / "run.png"
    image = np.random.default_rng(0).random((8, 12, 3), dtype=np.float32)
    leaves = [np.arange(6, dtype=np.float32).reshape(2, 3), np.int32(7)]
    point = outputs.SavedPoint(0, 5, image, leaves, "PyTreeDef((*, *))")
    outputs.write_outputs(out, image, _record(), point)
    saved, record = outputs.read_resume(out, CONFIG)
    assert (saved.phase, saved.done, saved.structure) == (0, 5, "PyTreeDef((*, *))")
    np.testing.assert_array_equal(saved.image, image)
    assert [np.asarray(v).tolist() for v in saved.leaves] == [v.tolist() for v in
                                                              map(np.asarray, leaves)]
    assert record["history"] == [3.0, 2.0]
    outputs.write_outputs(out, image, {"config": CONFIG, "history": [1.0]})  # completed
    assert not outputs.resume_path(out).exists()


def test_a_resume_file_of_another_version_is_refused(tmp_path):
    out = tmp_path / "run.png"
    image = np.zeros((4, 4, 3), np.float32)
    outputs.write_outputs(out, image, _record(), outputs.SavedPoint(1, 2, image, None, None))
    path = outputs.resume_path(out)
    with np.load(path) as saved:
        arrays = dict(saved)
    meta = json.loads(arrays["meta"].tobytes())
    arrays["meta"] = np.frombuffer(json.dumps({**meta, "version": 99}).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(JStyleError, match="not a jstyle resume file of version 1"):
        outputs.read_resume(out, CONFIG)
    path.write_bytes(b"not a zip")
    with pytest.raises(JStyleError, match="cannot read .* to resume"):
        outputs.read_resume(out, CONFIG)


def test_jstyle_0_2s_resume_file_continues_at_full_size(tmp_path):
    out = tmp_path / "old.png"
    image = np.full((4, 4, 3), 0.5, np.float32)
    outputs.sidecar_path(out).write_text(json.dumps(_record()))
    np.save(out.with_suffix(".resume.npy"), image)
    saved, _ = outputs.read_resume(out, CONFIG)
    assert (saved.phase, saved.done, saved.leaves) == (1, 2, None)  # after the coarse stage
    np.testing.assert_array_equal(saved.image, image)


def test_nothing_to_resume_and_other_settings_are_one_line(tmp_path):
    out = tmp_path / "none.png"
    with pytest.raises(JStyleError, match="nothing to resume"):
        outputs.read_resume(out, CONFIG)
    outputs.sidecar_path(out).write_text(json.dumps(_record()))
    with pytest.raises(JStyleError, match=r"other settings \(size\)"):
        outputs.read_resume(out, {**CONFIG, "size": 64})
    with pytest.raises(JStyleError, match="is missing"):
        outputs.read_resume(out, CONFIG)


def _srgb() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize(("name", "fmt", "bits"), [("o.png", None, 8), ("o.png", "png16", 16),
                                                   ("o.tif", None, 16), ("o.tiff", "tiff16", 16)])
def test_every_format_is_written_with_its_config_and_its_print_info(tmp_path, name, fmt, bits):
    from jstyle.config import resolve
    from jstyle.images import PrintInfo, print_info, read_image, to_array
    from jstyle.preprocessing import delivered

    out = tmp_path / name
    config = resolve({"output": str(out), "output_format": fmt, "size": 32})
    info = PrintInfo(_srgb(), (300.0, 300.0))
    image = np.random.default_rng(1).random((6, 9, 3), dtype=np.float32)
    record = {"config": config.to_dict(), "history": [1.0],
              "output": outputs.output_record(config, info)}
    outputs.write_outputs(out, image, record, info=info)
    assert outputs.config_from_image(out) == config.to_dict()
    np.testing.assert_array_equal(to_array(read_image(out, deep=True)), delivered(image, bits))
    assert print_info(out).icc_profile == info.icc_profile
    sidecar = json.loads(outputs.sidecar_path(out).read_text())
    assert sidecar["output"]["format"] == config.image_format
    assert sidecar["output"]["bits"] == bits


def test_the_sidecar_says_what_the_file_carries():
    import hashlib

    from jstyle.config import resolve
    from jstyle.images import PrintInfo

    icc = _srgb()
    config = resolve({"output": "x.tif"})
    assert outputs.output_record(config, PrintInfo(icc, (299.99944, 300.0))) == {
        "format": "tiff16", "bits": 16, "dpi": [299.9994, 300.0],
        "icc_profile": {"bytes": len(icc), "sha256": hashlib.sha256(icc).hexdigest(),
                        "description": "sRGB built-in"}}
    assert outputs.output_record(resolve({}), PrintInfo()) == {
        "format": "png8", "bits": 8, "icc_profile": None, "dpi": None}
    assert outputs.icc_description(b"not a profile") is None  # embedded all the same


def test_frames_are_written_in_the_output_format(tmp_path):
    import tifffile

    from jstyle.config import resolve
    from jstyle.images import PrintInfo

    out = tmp_path / "run.tif"
    assert outputs.frame_path(out, 100) == tmp_path / "run_00100.tif"
    assert outputs.frame_path(tmp_path / "run.png", 7) == tmp_path / "run_00007.png"
    frame = outputs.save_frame(out, 100, np.full((2, 3, 3), 0.5, np.float32),
                               resolve({"output": str(out)}), PrintInfo(None, (72.0, 72.0)))
    assert tifffile.imread(frame).dtype == np.uint16
    assert outputs.resume_path(out) == tmp_path / "run.resume.npz"
