"""The paper's normalised VGG-19 (sec. 2): the rescaling, its file and its provisioning."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import h5py
import jax
import numpy as np
import pytest

from jstyle.default_images import swirl_painting
from jstyle.images import save_png
from jstyle.layers import CONV_CHANNELS, CONV_LAYERS
from jstyle.preprocessing import CAFFE, to_network
from jstyle.vgg import extract_features
from jstyle.weights import convert as conv
from jstyle.weights import normalize, provision, store
from tests.helpers import one_line_error

RELUS = normalize.RELU_LAYERS
PROVENANCE = {
    "source": "test", "source_file": "none", "source_sha256": "0" * 64,
    "license": store.LICENSE, "converter_version": "1",
}  # fmt: skip


def _numpy(params) -> store.Params:
    return {layer: {name: np.array(a, np.float32) for name, a in p.items()}
            for layer, p in params.items()}


@pytest.fixture(scope="module")
def base_params(random_params) -> store.Params:
    """Random He-initialised params with one dead filter: conv2_1's channel 5 never fires."""
    params = _numpy(random_params)
    params["conv2_1"]["kernel"][..., 5] = 0.0
    params["conv2_1"]["bias"][5] = -1.0
    return params


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return np.random.default_rng(1).random((3, 32, 32, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def normalized(base_params, calibration):
    return normalize.normalize_params(base_params, calibration, CAFFE)


@pytest.fixture(scope="module")
def base_means(base_params, calibration) -> dict[str, np.ndarray]:
    return normalize.mean_activations(base_params, calibration, CAFFE)


def _responses(params, image: np.ndarray, pooling: str = "avg") -> dict[str, np.ndarray]:
    x = to_network(image[None], CAFFE)
    return jax.device_get(extract_features(params, x, RELUS, pooling))


def _worst_relative_error(original, rescaled, factors, image, pooling="avg") -> float:
    """max over layers of max|rescaled - original / f| / max|original / f|."""
    before, after = _responses(original, image, pooling), _responses(rescaled, image, pooling)
    worst = 0.0
    for relu in RELUS:
        expected = before[relu] / factors[relu]
        scale = max(float(np.abs(expected).max()), 1e-30)
        worst = max(worst, float(np.abs(after[relu] - expected).max()) / scale)
    return worst


# --- (a) the normalised network is the original up to per-filter factors ---------------------


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_responses_are_the_originals_divided_random(base_params, normalized, pooling) -> None:
    params, factors = normalized
    image = swirl_painting(40, 48)  # not a calibration image, not square
    assert _worst_relative_error(base_params, params, factors, image, pooling) < 1e-4
    for relu in RELUS:  # the factors really differ, so the check above can fail
        assert factors[relu].dtype == np.float32
        assert np.ptp(factors[relu][factors[relu] != 1]) > 0


def test_responses_are_the_originals_divided_real(real_weights) -> None:
    images = normalize.default_calibration_images(48)
    params, factors = normalize.normalize_params(
        real_weights.params, images, real_weights.preprocessing
    )
    image = swirl_painting(48, 64, seed=3)
    assert _worst_relative_error(real_weights.params, params, factors, image) < 1e-4
    assert min(float(f.min()) for f in factors.values()) < 0.5  # far from the identity
    assert max(float(f.max()) for f in factors.values()) > 50


def test_identity_factors_change_nothing(base_params) -> None:
    ones = {relu: np.ones(CONV_CHANNELS[conv][1], np.float32)
            for conv, relu in zip(CONV_LAYERS, RELUS, strict=True)}
    same = normalize.rescale_params(base_params, ones)
    for layer in CONV_LAYERS:
        for name in ("kernel", "bias"):
            np.testing.assert_array_equal(same[layer][name], base_params[layer][name])


# --- (b) every filter's mean over the calibration set is 1 ------------------------------------


#: A filter whose mean is below this fraction of its layer's median barely fires: its few
#: positive responses are small differences of much larger terms, known only to float32
#: rounding, in the original network as in the normalised one (see normalize.py).
BARELY = 1e-4


def _assert_means_one(params, images, prep, before: dict[str, np.ndarray]) -> int:
    """Mean 1 for every filter that fired before, 0 for the dead ones; returns how many
    filters that barely fire were left unchecked."""
    means = normalize.mean_activations(params, images, prep)
    unchecked = 0
    for relu in RELUS:
        dead = before[relu] == 0
        barely = ~dead & (before[relu] < BARELY * np.median(before[relu][~dead]))
        live = ~dead & ~barely
        np.testing.assert_allclose(means[relu][live], 1.0, rtol=0, atol=1e-3, err_msg=relu)
        np.testing.assert_array_equal(means[relu][dead], 0.0, err_msg=relu)
        np.testing.assert_allclose(means[relu][barely], 1.0, rtol=0, atol=0.05, err_msg=relu)
        unchecked += int(np.count_nonzero(barely))
    return unchecked


def test_means_are_one_random(normalized, calibration, base_means) -> None:
    params, _ = normalized
    assert sum(np.count_nonzero(m == 0) for m in base_means.values()) > 1  # some dead filters
    assert _assert_means_one(params, calibration, CAFFE, base_means) <= 3


def test_means_are_one_real(real_weights) -> None:
    images = normalize.default_calibration_images(48)
    prep = real_weights.preprocessing
    before = normalize.mean_activations(real_weights.params, images, prep)
    params, _ = normalize.normalize_params(real_weights.params, images, prep)
    assert _assert_means_one(params, images, prep, before) == 0  # every filter checked


def test_dead_filter_keeps_factor_one(base_params, normalized, calibration, base_means) -> None:
    params, factors = normalized
    for relu in RELUS:
        dead = base_means[relu] == 0
        np.testing.assert_array_equal(factors[relu][dead], 1.0)
        np.testing.assert_array_equal(factors[relu][~dead], base_means[relu][~dead].astype("f4"))
    assert base_means["relu2_1"][5] == 0  # the planted one
    np.testing.assert_array_equal(params["conv2_1"]["bias"][5], -1.0)  # itself: unchanged
    # The next convolution's weights from it are unchanged too; the others are rescaled.
    incoming, original = params["conv2_2"]["kernel"][:, :, 5], base_params["conv2_2"]["kernel"]
    np.testing.assert_allclose(incoming, original[:, :, 5] / factors["relu2_2"], rtol=1e-6)
    after = normalize.mean_activations(params, calibration, CAFFE)
    assert after["relu2_1"][5] == 0


def test_one_pass_equals_layer_by_layer(
    base_params, normalized, calibration, base_means
) -> None:
    """Measuring each layer after the ones before it are rescaled (the procedure as the
    paper states it) gives the means the one pass over the original network measured."""
    _, factors = normalized
    for relu in ("relu1_2", "relu3_1", "relu5_4"):
        done = {r: (factors[r] if RELUS.index(r) < RELUS.index(relu) else np.ones_like(f))
                for r, f in factors.items()}
        partly = normalize.rescale_params(base_params, done)
        means = normalize.mean_activations(partly, calibration, CAFFE)[relu]
        expected = base_means[relu]
        np.testing.assert_allclose(means, expected, rtol=1e-4, atol=1e-6 * expected.max(),
                                   err_msg=relu)


def test_mean_activations_errors(base_params) -> None:
    one_line_error(lambda: normalize.mean_activations(base_params, [], CAFFE), "at least one")
    gray = np.zeros((1, 8, 8), np.float32)
    one_line_error(lambda: normalize.mean_activations(base_params, gray, CAFFE), "(H, W, 3)")
    one_line_error(lambda: normalize.mean_activations(
        base_params, np.zeros((1, 8, 8, 3)), CAFFE, pooling="sum"), "avg, max")


# --- calibration sets -------------------------------------------------------------------------


def test_default_calibration_set_offline() -> None:
    images = normalize.default_calibration_images(24)
    assert images.shape == (len(normalize.SKIMAGE_CALIBRATION) + 1, 24, 24, 3)
    assert images.dtype == np.float32 and images.min() >= 0 and images.max() <= 1
    assert len({normalize.images_sha256(image) for image in images}) == len(images)
    np.testing.assert_array_equal(images[-1], swirl_painting(24, 24))
    summary = normalize.default_calibration_summary(24)
    assert summary.startswith(f"{len(images)} images at 24 px (avg pooling)")
    assert all(name in summary for name in normalize.SKIMAGE_CALIBRATION)


def test_calibration_folder(tmp_path: Path) -> None:
    save_png(tmp_path / "b.png", swirl_painting(30, 60))
    save_png(tmp_path / "a.PNG", np.full((20, 10, 3), 0.5, np.float32))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in normalize.calibration_files(tmp_path)] == ["a.PNG", "b.png"]
    images, description = normalize.calibration_set(tmp_path, 16)
    assert images.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(images[0], 0.5, atol=1 / 255)
    assert description == f"2 images at 16 px from the folder {tmp_path.resolve()}"


def test_bad_calibration_folder(tmp_path: Path) -> None:
    load = normalize.load_calibration_folder
    one_line_error(lambda: load(tmp_path / "nope"), "nope does not exist", "folder of images")
    (tmp_path / "file.png").write_bytes(b"x")
    one_line_error(lambda: load(tmp_path / "file.png"), "is not a folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("hi")
    one_line_error(lambda: load(empty), "holds no images", ".jpg")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 20)
    one_line_error(lambda: load(broken), "x.jpg")


# --- (c) the normalised weights file ----------------------------------------------------------


@pytest.fixture(scope="module")
def base_file(tmp_path_factory: pytest.TempPathFactory, base_params) -> Path:
    path = tmp_path_factory.mktemp("base") / "base.h5"
    store.save_weights(path, base_params, CAFFE, PROVENANCE)
    return path


@pytest.fixture(scope="module")
def calibration_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("calibration")
    save_png(folder / "one.png", swirl_painting(32, 32))
    save_png(folder / "two.png", swirl_painting(32, 48, seed=1))
    return folder


def test_base_file_is_the_base_variant(tmp_path: Path, base_file: Path) -> None:
    weights = store.load_weights(base_file)
    assert weights.variant == store.BASE_VARIANT and weights.normalization is None
    old = tmp_path / "old.h5"  # written before variants existed
    old.write_bytes(base_file.read_bytes())
    with h5py.File(old, "a") as f:
        del f.attrs["variant"]
    assert store.load_weights(old).variant == "vgg19"
    with h5py.File(old, "a") as f:
        f.attrs["variant"] = "vgg16"
    one_line_error(lambda: store.load_weights(old), "variant 'vgg16'", "vgg19-normalized")


def test_normalized_file_round_trip(
    tmp_path: Path, base_file: Path, base_params, calibration_folder: Path
) -> None:
    out = tmp_path / "norm.h5"
    messages: list[str] = []
    conv.convert_normalized(base_file, out, calibration=calibration_folder, log=messages.append)
    assert len(messages) == 2 and messages[-1] == f"jstyle: wrote {out}"
    weights = store.load_weights(out)
    base = store.load_weights(base_file)
    record = weights.normalization
    assert weights.variant == "vgg19-normalized" and record is not None
    assert weights.source == "test" and weights.preprocessing == CAFFE
    size = normalize.CALIBRATION_SIZE
    images, description = normalize.calibration_set(calibration_folder)
    assert record.calibration == description and record.images == 2 and record.size == size
    assert record.calibration_sha256 == normalize.images_sha256(images)
    assert record.pooling == "avg" and record.base_params_sha256 == base.params_sha256
    assert weights.params_sha256 == store.params_sha256(weights.params) != base.params_sha256
    params, factors = normalize.normalize_params(base_params, images, CAFFE)
    assert list(record.factors) == list(RELUS)
    for relu in RELUS:
        np.testing.assert_array_equal(record.factors[relu], factors[relu])
    for layer in CONV_LAYERS:  # the recorded factors are the ones applied
        np.testing.assert_array_equal(weights.params[layer]["kernel"], params[layer]["kernel"])
    with h5py.File(out) as f:
        assert f.attrs["variant"] == "vgg19-normalized" and f.attrs["calibration_size"] == size
        assert f.attrs["source_file"] == base_file.name
        assert f.attrs["source_sha256"] == base.sha256
    one_line_error(lambda: conv.convert_normalized(out, tmp_path / "again.h5"),
                   "already the vgg19-normalized variant")


def test_normalized_file_without_factors_is_refused(tmp_path: Path, base_file: Path) -> None:
    out = tmp_path / "norm.h5"
    images = np.random.default_rng(2).random((1, 32, 32, 3), dtype=np.float32)
    base = store.load_weights(base_file)
    params, factors = normalize.normalize_params(base.params, images, CAFFE)
    record = store.Normalization(factors, "test", "0" * 64, 1, 32, "avg", base.params_sha256)
    store.save_weights(out, params, CAFFE, PROVENANCE, normalization=record)
    loaded = store.load_weights(out).normalization
    assert dataclasses.replace(loaded, factors={}) == dataclasses.replace(record, factors={})
    np.testing.assert_array_equal(loaded.factors["relu5_4"], factors["relu5_4"])
    with h5py.File(out, "a") as f:
        del f[f"{store.FACTORS_GROUP}/relu3_3"]
    one_line_error(lambda: store.load_weights(out), "is not a jstyle weights file", "relu3_3",
                   "--normalize --output")
    bad = dict(factors, relu1_1=np.zeros(64, np.float32))
    broken = store.Normalization(bad, "test", "0" * 64, 1, 32, "avg", base.params_sha256)
    one_line_error(lambda: store.save_weights(tmp_path / "z.h5", params, CAFFE, PROVENANCE,
                                              normalization=broken), "relu1_1", "not all positive")


# --- (d) provisioning the variant by name -----------------------------------------------------


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty user cache; the default calibration set made small, for speed."""
    monkeypatch.delenv("JSTYLE_WEIGHTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(normalize, "CALIBRATION_SIZE", 48)
    return tmp_path / "jstyle"


def test_provision_normalized_real(cache: Path, real_weights) -> None:
    cache.mkdir()
    base = cache / "vgg19-imagenet.h5"
    os.symlink(real_weights.path, base)
    assert provision.resolve_weights(None) == provision.resolve_weights("vgg19") == base
    messages: list[str] = []
    path = provision.resolve_weights("vgg19-normalized", log=messages.append)
    assert path == cache / "vgg19-normalized.h5" == store.variant_path("vgg19-normalized")
    assert len(messages) == 1, messages
    assert "not found" in messages[0] and "once" in messages[0] and "48 px" in messages[0]
    weights = store.load_weights(path)
    assert weights.variant == "vgg19-normalized" and weights.source == real_weights.source
    record = weights.normalization
    assert record.base_params_sha256 == real_weights.params_sha256
    assert record.size == 48 and record.images == len(normalize.SKIMAGE_CALIBRATION) + 1
    assert record.calibration == normalize.default_calibration_summary(48)
    stamp = path.stat().st_mtime_ns
    assert provision.resolve_weights("vgg19-normalized", log=messages.append) == path
    assert len(messages) == 1 and path.stat().st_mtime_ns == stamp  # made once
    assert sorted(p.name for p in cache.iterdir()) == sorted(  # and the verified digests
        ["vgg19-imagenet.h5", "vgg19-normalized.h5", store.DIGESTS_FILE])


def test_provision_again_when_base_changes(cache: Path, base_params) -> None:
    base = cache / "vgg19-imagenet.h5"
    store.save_weights(base, base_params, CAFFE, PROVENANCE)
    messages: list[str] = []
    path = provision.ensure_weights(variant="vgg19-normalized", log=messages.append)
    first = store.load_weights(path).normalization.base_params_sha256
    assert first == store.load_weights(base).params_sha256 and len(messages) == 1
    doubled = {layer: {"kernel": p["kernel"] * 2, "bias": p["bias"]}
               for layer, p in base_params.items()}
    store.save_weights(base, doubled, CAFFE, PROVENANCE)
    assert provision.ensure_weights(variant="vgg19-normalized", log=messages.append) == path
    assert len(messages) == 2 and "made from other weights" in messages[1]
    assert store.load_weights(path).normalization.base_params_sha256 != first


def test_provision_normalized_beside_jstyle_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache: Path
) -> None:
    monkeypatch.setenv("JSTYLE_WEIGHTS", str(tmp_path / "mine" / "w.h5"))
    assert store.variant_path("vgg19-normalized") == tmp_path / "mine" / "vgg19-normalized.h5"
    assert store.variant_path("vgg19") == tmp_path / "mine" / "w.h5"


# --- (e) errors -------------------------------------------------------------------------------


def test_unknown_variant(cache: Path) -> None:
    one_line_error(lambda: provision.resolve_weights("vgg19-normalised"),
                   "unknown weights variant 'vgg19-normalised'", "did you mean vgg19-normalized",
                   "vgg19, vgg19-normalized")
    message = one_line_error(lambda: provision.resolve_weights("resnet"), "'resnet'", "path of a")
    assert "did you mean" not in message
    one_line_error(lambda: provision.ensure_weights(variant="vgg16"), "unknown weights variant")
    one_line_error(lambda: store.variant_path("vgg16"), "unknown weights variant")
    one_line_error(lambda: provision.resolve_weights("typo.h5"), "typo.h5 does not exist")
    assert not cache.exists()  # nothing provisioned


def test_cli_normalize(
    tmp_path: Path, base_file: Path, calibration_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "n.h5"
    args = ["--normalize", "--input", str(base_file), "--output", str(out),
            "--calibration", str(calibration_folder)]
    assert provision.main(args) == 0
    assert store.load_weights(out).variant == "vgg19-normalized"
    assert capsys.readouterr().out.splitlines()[-1] == f"jstyle: wrote {out}"
    not_jstyle = tmp_path / "keras.h5"
    with h5py.File(not_jstyle, "w") as f:
        f.create_dataset("x", data=[1])
    for argv, message in [
        (args, "already exists; pass --force"),
        ([*args, "--force", "--source", "keras"], "not --source"),
        (["--calibration", str(calibration_folder), "--output", str(tmp_path / "c.h5")],
         "only with --normalize"),
        (["--normalize", "--input", str(not_jstyle), "--output", str(tmp_path / "k.h5")],
         "is not a jstyle weights file; convert it first"),
        (["--normalize", "--input", str(base_file), "--output", str(tmp_path / "e.h5"),
          "--calibration", str(tmp_path / "missing")], "missing does not exist"),
    ]:
        assert provision.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("convert_vgg_weights: error: ") and message in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "e.h5").exists() and not (tmp_path / "k.h5").exists()
