"""Images: every mode Pillow reads becomes correct RGB, every bad file is one clear line."""

from __future__ import annotations

import errno
import io
import os
import struct
import tempfile
import zlib
from pathlib import Path

import helpers
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from jstyle import images
from jstyle.errors import JStyleError
from jstyle.images import fit_longest, read_image, save_png, to_array

STEP = 1 / 255  # one 8-bit level


def load(path: Path) -> np.ndarray:
    """``read_image`` then ``to_array``, checking the contract every reader promises."""
    array = to_array(read_image(path))
    assert array.dtype == np.float32 and array.ndim == 3 and array.shape[2] == 3
    assert array.min() >= 0.0 and array.max() <= 1.0
    return array


def saved(path: Path, image: Image.Image, **options) -> Path:
    image.save(path, **options)
    return path


def png16(arr: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG written by hand (Pillow writes 16 bits only for grayscale)."""
    h, w = arr.shape[:2]
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def palette_image(indices: np.ndarray, colours: list[tuple[int, int, int]]) -> Image.Image:
    image = Image.frombytes("P", indices.shape[::-1], indices.astype(np.uint8).tobytes())
    image.putpalette([c for colour in colours for c in colour])
    return image


# --- every mode -------------------------------------------------------------------------------


def test_grayscale_l(tmp_path: Path) -> None:
    gray = np.arange(0, 256, 5, dtype=np.uint8).reshape(1, -1).repeat(3, axis=0)
    got = load(saved(tmp_path / "l.png", Image.fromarray(gray)))
    np.testing.assert_array_equal(got, np.repeat(gray[..., None], 3, axis=2) / np.float32(255))


def test_la_composited_onto_white(tmp_path: Path) -> None:
    la = np.array([[[50, 255], [50, 0], [50, 128]]], np.uint8)
    got = load(saved(tmp_path / "la.png", Image.fromarray(la)))
    np.testing.assert_allclose(got[0, :, 0], [50 / 255, 1.0, (50 * 128 + 255 * 127) / 255 / 255],
                               atol=STEP)
    assert np.all(got[..., 0] == got[..., 1]) and np.all(got[..., 1] == got[..., 2])


def test_rgba_composited_onto_white(tmp_path: Path) -> None:
    rgba = np.array([[[255, 0, 0, 0], [0, 0, 255, 255], [0, 0, 0, 128]]], np.uint8)
    got = load(saved(tmp_path / "rgba.png", Image.fromarray(rgba)))
    np.testing.assert_allclose(got[0], [[1, 1, 1], [0, 0, 1], [127 / 255] * 3], atol=STEP)


def test_palette(tmp_path: Path) -> None:
    image = palette_image(np.array([[0, 1, 2]]), [(255, 0, 0), (0, 255, 0), (10, 20, 30)])
    got = load(saved(tmp_path / "p.png", image))
    np.testing.assert_allclose(got[0] * 255, [[255, 0, 0], [0, 255, 0], [10, 20, 30]])


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_with_transparency(tmp_path: Path, suffix: str) -> None:
    image = palette_image(np.array([[0, 1, 1]]), [(255, 0, 0), (0, 0, 255)])
    path = saved(tmp_path / f"p{suffix}", image, transparency=0)
    assert Image.open(path).mode == "P" and "transparency" in Image.open(path).info
    np.testing.assert_allclose(load(path)[0], [[1, 1, 1], [0, 0, 1], [0, 0, 1]])


def test_rgb_with_transparent_colour(tmp_path: Path) -> None:
    rgb = np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8)
    got = load(saved(tmp_path / "trns.png", Image.fromarray(rgb), transparency=(4, 5, 6)))
    np.testing.assert_allclose(got[0] * 255, [[1, 2, 3], [255, 255, 255]], atol=1e-4)


def test_16_bit_grayscale_png(tmp_path: Path) -> None:
    values = np.array([[0, 255, 32768, 65535]], np.uint16)  # 255 of 65535 is dark, not 8-bit
    path = saved(tmp_path / "g16.png", Image.fromarray(values))
    assert Image.open(path).mode == "I;16"
    np.testing.assert_allclose(load(path)[0, :, 1], [0, 1 / 255, 128 / 255, 1], atol=1e-6)


@pytest.mark.parametrize(("color_type", "mode"), [(2, "RGB"), (6, "RGBA")])
def test_16_bit_colour_png(tmp_path: Path, color_type: int, mode: str) -> None:
    rgb = np.array([[[65535, 0, 0], [0, 65535, 0], [0, 0, 65535], [32896, 32896, 32896]]],
                   np.uint16)
    if color_type == 6:
        rgb = np.concatenate([rgb, np.full((1, 4, 1), 65535, np.uint16)], axis=2)
    path = tmp_path / "rgb16.png"
    path.write_bytes(png16(rgb, color_type))
    assert Image.open(path).mode == mode  # Pillow keeps the high byte of each sample
    np.testing.assert_allclose(load(path)[0], [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5] * 3],
                               atol=STEP)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = np.array([[[0, 0, 0, 0], [0, 255, 255, 0], [255, 0, 255, 0], [0, 0, 0, 255]]],
                    np.uint8).repeat(8, axis=0).repeat(8, axis=1)
    image = Image.frombytes("CMYK", (32, 8), cmyk.tobytes())
    path = saved(tmp_path / "cmyk.jpg", image, quality=100)
    assert Image.open(path).mode == "CMYK"
    got = load(path)[4, 4::8]
    np.testing.assert_allclose(got, [[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 0]], atol=0.05)


@pytest.mark.parametrize(("orientation", "top_left", "bottom_left"), [(6, 1, 0), (8, 0, 1)])
def test_exif_rotation_is_applied(tmp_path: Path, orientation: int, top_left: int,
                                  bottom_left: int) -> None:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white: after a quarter turn it is the top or the bottom
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = saved(tmp_path / "photo.jpg", Image.fromarray(pixels), exif=exif.tobytes(), quality=95)
    got = load(path)
    assert got.shape == (40, 20, 3)  # portrait now
    assert round(float(got[0, 0, 0])) == top_left
    assert round(float(got[-1, 0, 0])) == bottom_left


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    red, blue = (Image.new("RGB", (8, 6), c) for c in [(255, 0, 0), (0, 0, 255)])
    path = tmp_path / "anim.gif"
    red.save(path, save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    np.testing.assert_array_equal(load(path), np.broadcast_to([1, 0, 0], (6, 8, 3)))


def test_one_bit(tmp_path: Path) -> None:
    bits = np.array([[True, False, True]])
    path = saved(tmp_path / "bits.png", Image.fromarray(bits))
    assert Image.open(path).mode == "1"
    np.testing.assert_array_equal(load(path)[0, :, 0], [1, 0, 1])


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0.0, 0.5, 1.0], [0, 0.5, 1]),  # float in [0, 1]
     ([0.0, 127.5, 255.0, 300.0, -4.0], [0, 0.5, 1, 1, 0]),  # float in [0, 255], clipped
     ([0.0, float("nan"), 0.25], [0, 0, 0.25])],
)
def test_float_f(tmp_path: Path, values: list[float], expected: list[float]) -> None:
    path = saved(tmp_path / "f.tif", Image.fromarray(np.array([values], np.float32)))
    assert Image.open(path).mode == "F"
    np.testing.assert_allclose(load(path)[0, :, 0], expected, atol=STEP)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0, 128, 255], [0, 128 / 255, 1]),  # 8-bit values
     ([0, 32896, 65535, -3], [0, 0.5, 1, 0]),  # 16-bit values, negatives clipped
     ([0, 2**31 - 1], [0, 1])],  # full 32-bit range
)
def test_int_i(tmp_path: Path, values: list[int], expected: list[float]) -> None:
    path = saved(tmp_path / "i.tif", Image.fromarray(np.array([values], np.int32)))
    assert Image.open(path).mode == "I"
    np.testing.assert_allclose(load(path)[0, :, 0], expected, atol=STEP)


@pytest.mark.parametrize("mode", ["YCbCr", "LAB", "PA"])
def test_other_tiff_modes(tmp_path: Path, mode: str) -> None:
    path = saved(tmp_path / "x.tif", Image.new(mode, (5, 3)))
    assert Image.open(path).mode == mode
    assert load(path).shape == (3, 5, 3)


def test_non_ascii_name_with_spaces(tmp_path: Path) -> None:
    path = saved(tmp_path / "mein Foto é 写真.png", Image.new("RGB", (3, 2), (0, 255, 0)))
    np.testing.assert_array_equal(load(path), np.broadcast_to([0, 1, 0], (2, 3, 3)))


# --- every mode, any size: properties ---------------------------------------------------------

#: (mode, format) pairs Pillow writes; lossless ones are also checked pixel by pixel.
MODES = [("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("PA", "TIFF"), ("RGB", "PNG"),
         ("RGBA", "PNG"), ("CMYK", "TIFF"), ("I;16", "PNG"), ("I;16", "TIFF"), ("I", "TIFF"),
         ("F", "TIFF"), ("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("P", "GIF")]


def random_image(mode: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A random ``mode`` image (F in [0, 1] or [0, 255], I in 0..255 or 0..65535)."""
    size = (width, height)
    if mode == "1":
        return Image.fromarray(rng.random((height, width)) > 0.5)
    if mode in ("I;16", "I", "F"):
        top = rng.choice([1.0, 255.0]) if mode == "F" else rng.choice([255, 65535])
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        values = (rng.random((height, width)) * top).astype(dtype)
        return Image.frombytes(mode, size, values.tobytes())
    bands = len(Image.new(mode, (1, 1)).getbands())
    image = Image.frombytes(mode, size, rng.integers(0, 256, (height, width, bands),
                                                     dtype=np.uint8).tobytes())
    if mode in ("P", "PA"):
        image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
    return image


def reference(image: Image.Image) -> np.ndarray:
    """What reading ``image`` must give, computed independently of jstyle (module docstring)."""
    if image.mode in ("I;16", "I", "F"):
        v = np.asarray(image, dtype=np.float64)
        top = v.max()
        peak = {"I;16": 65535.0, "F": 1.0 if top <= 1 else 255.0,
                "I": 255.0 if top <= 255 else 65535.0}[image.mode]
        return np.repeat(np.clip(v / peak, 0, 1)[..., None], 3, axis=2)
    if image.mode in ("LA", "PA", "RGBA"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + (1 - alpha)
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(MODES), st.integers(1, 64), st.integers(1, 64), st.integers(0, 2**32 - 1))
@example(("RGBA", "PNG"), 64, 1, 0)
@example(("I;16", "PNG"), 1, 64, 1)
@example(("CMYK", "JPEG"), 1, 1, 2)
def test_any_mode_any_size_reads_as_rgb(mode_format: tuple[str, str], width: int, height: int,
                                        seed: int) -> None:
    mode, fmt = mode_format
    original = random_image(mode, width, height, np.random.default_rng(seed))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"x.{fmt.lower()}"
        original.save(path, format=fmt)
        got = load(path)
    assert got.shape == (height, width, 3)
    if fmt in ("PNG", "TIFF"):
        np.testing.assert_allclose(got, reference(original), atol=STEP + 1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 64), st.integers(1, 64), st.integers(1, 128))
@example(64, 1, 1)
@example(1, 64, 7)
@example(64, 1, 128)
def test_fit_longest(width: int, height: int, size: int) -> None:
    w, h = fit_longest(Image.new("RGB", (width, height)), size).size
    assert max(w, h) == size and min(w, h) >= 1
    assert (w >= h) == (width >= height) or w == h  # orientation kept
    scale = size / max(width, height)
    assert abs(w - width * scale) <= 0.5 or w == 1
    assert abs(h - height * scale) <= 0.5 or h == 1


# --- bad files: one line each -----------------------------------------------------------------


def read_error(path: Path, *fragments: str) -> str:
    """``read_image(path)`` raises one JStyleError line holding every fragment."""
    return helpers.one_line_error(lambda: read_image(path), *fragments)


def test_missing(tmp_path: Path) -> None:
    path = tmp_path / "no such é photo.jpg"
    read_error(path, f"image not found: {path}")
    read_error(tmp_path / "not_a_folder.png" / "x.png", "image not found")


def test_name_with_a_newline_stays_one_line(tmp_path: Path) -> None:
    read_error(tmp_path / "two\nlines.jpg", "image not found", "two\\nlines.jpg")


def test_folder(tmp_path: Path) -> None:
    read_error(tmp_path, "is a folder, not an image file")


def test_fifo(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    os.mkfifo(tmp_path / "pipe.png")
    read_error(tmp_path / "pipe.png", "is not a regular file")


def test_embedded_nul(tmp_path: Path) -> None:
    read_error(tmp_path / "a\0b.png", "cannot read image")


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = saved(tmp_path / "locked.png", Image.new("RGB", (2, 2)))

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", denied)
    read_error(path, f"cannot read image {path}: permission denied")


def test_io_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = saved(tmp_path / "disk.png", Image.new("RGB", (2, 2)))

    def broken_disk(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Image, "open", broken_disk)
    read_error(path, f"cannot read image {path}: Input/output error")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    read_error(path, "empty.jpg is empty")


def _encoded(fmt: str) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("load_truncated", [False, True])
@pytest.mark.parametrize(("fmt", "suffix"), [("JPEG", ".jpg"), ("PNG", ".png")])
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.02])
def test_truncated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, suffix: str,
                   keep: float, load_truncated: bool) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    data = _encoded(fmt)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: max(12, int(len(data) * keep))])
    read_error(path, "is truncated or corrupt", "re-export or re-download")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is load_truncated  # the global setting is restored


def test_corrupt_png_checksum(tmp_path: Path) -> None:
    data = bytearray(_encoded("PNG"))
    data[40] ^= 0xFF  # inside IDAT: its CRC no longer matches
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(data))
    read_error(path, "is truncated or corrupt")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("not an image\n")
    read_error(path, "is not an image Pillow can read")


def test_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = saved(tmp_path / "bomb.png", Image.new("L", (20, 20)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 400 pixels > 2 x the limit
    read_error(path, "is too large", "shrink the image")


# --- writing ----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 64), st.integers(1, 64), st.integers(0, 2**32 - 1))
@example(64, 1, 0)
def test_save_png_round_trip(width: int, height: int, seed: int) -> None:
    array = np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = save_png(Path(folder) / "out é.png", array, {"jstyle:config": '{"size": 256} ü'})
        got = load(path)
        assert Image.open(path).text["jstyle:config"] == '{"size": 256} ü'
        assert os.listdir(folder) == ["out é.png"]
    np.testing.assert_allclose(got, array, atol=0.5 / 255 + 1e-6)


def test_save_png_clips_and_zeroes_nan(tmp_path: Path) -> None:
    array = np.array([[[-1.0, 2.0, np.nan]]], np.float32)
    np.testing.assert_array_equal(load(save_png(tmp_path / "c.png", array)), [[[0, 1, 0]]])


def hidden_temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


@pytest.mark.parametrize("existed", [False, True])
@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError])
def test_interrupted_save_leaves_nothing_half_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existed: bool, fault: type) -> None:
    target = tmp_path / "result.png"
    if existed:
        save_png(target, np.zeros((2, 2, 3)))
    before = target.read_bytes() if existed else None
    written: list[Path] = []

    def dies_mid_write(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n half")  # a partial file on disk...
        written.append(Path(fp))
        if fault is OSError:
            raise OSError(errno.ENOSPC, "No space left on device")
        raise KeyboardInterrupt  # ...then the user presses Ctrl-C

    monkeypatch.setattr(Image.Image, "save", dies_mid_write)
    expected = KeyboardInterrupt if fault is KeyboardInterrupt else JStyleError
    with pytest.raises(expected) as caught:
        save_png(target, np.ones((2, 2, 3)))
    if fault is OSError:
        assert str(caught.value).startswith(f"cannot write image {target}: No space left")
        assert "\n" not in str(caught.value)
    assert written and written[0].parent == tmp_path and written[0].name.startswith(".result")
    assert hidden_temps(tmp_path) == []
    if existed:
        assert target.read_bytes() == before
    else:
        assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["result.png"] if existed else [])


def test_module_docstring_documents_alpha() -> None:
    assert "composited onto white" in (images.__doc__ or "")


# --- 16 bits per channel, and what a print needs ------------------------------------------------


def srgb_profile() -> bytes:
    """A real ICC profile (Pillow's built-in sRGB), as a photo would carry one."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


FORMATS = [("png8", ".png", 8), ("png16", ".png", 16), ("tiff16", ".tif", 16)]


@pytest.mark.parametrize(("fmt", "suffix", "bits"), FORMATS)
def test_save_image_round_trips_the_quantised_image_exactly(tmp_path: Path, fmt: str,
                                                            suffix: str, bits: int) -> None:
    """Read back (deep), every format gives exactly the image quantised at its bit depth:
    what ``delivered`` evaluates. Values outside [0, 1] are clipped, NaN is 0."""
    from jstyle.preprocessing import delivered, quantize

    rng = np.random.default_rng(bits)
    array = rng.random((23, 37, 3), dtype=np.float32)
    array[0, :3] = [[-1.0, 2.0, np.nan]] * 3
    array[1] = np.linspace(0.5, 0.5 + 1 / 255, 37)[:, None]  # steps finer than 8 bits
    path = images.save_image(tmp_path / f"out é{suffix}", array, fmt,
                             {"jstyle:config": '{"size": 256} ü'})
    got = images.read_image(path, deep=True)
    assert isinstance(got, images.DeepImage) == (bits == 16)
    np.testing.assert_array_equal(to_array(got), delivered(array, bits))
    assert images.read_image_text(path) == {"jstyle:config": '{"size": 256} ü'}
    if fmt == "png16":
        header = path.read_bytes()[16:29]  # IHDR: width, height, depth, colour type, ...
        assert struct.unpack(">IIBB", header[:10]) == (37, 23, 16, 2)
    if fmt == "tiff16":
        import tifffile

        np.testing.assert_array_equal(tifffile.imread(path), quantize(array, 16))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


@pytest.mark.parametrize(("fmt", "suffix", "bits"), FORMATS)
def test_every_format_carries_the_icc_profile_and_dpi(tmp_path: Path, fmt: str, suffix: str,
                                                      bits: int) -> None:
    icc = srgb_profile()
    path = images.save_image(tmp_path / f"p{suffix}", np.zeros((4, 5, 3)), fmt,
                             info=images.PrintInfo(icc, (300.0, 240.0)))
    with Image.open(path) as image:
        assert image.info["icc_profile"] == icc
        assert image.info["dpi"] == pytest.approx((300, 240), abs=0.01)
    assert images.print_info(path).icc_profile == icc
    bare = images.save_image(tmp_path / f"bare{suffix}", np.zeros((4, 5, 3)), fmt)
    with Image.open(bare) as image:
        assert "icc_profile" not in image.info and "dpi" not in image.info
    assert images.print_info(bare) == images.PrintInfo()


def test_a_tiff16_records_its_resolution_in_inches(tmp_path: Path) -> None:
    import tifffile

    path = images.save_image(tmp_path / "p.tiff", np.zeros((4, 5, 3)), "tiff16",
                             info=images.PrintInfo(srgb_profile(), (300.0, 300.0)))
    with tifffile.TiffFile(path) as tiff:
        tags = tiff.pages[0].tags
        assert tags["XResolution"].value == (300, 1) == tags["YResolution"].value
        assert tags["ResolutionUnit"].value == 2  # inch
        assert tags["InterColorProfile"].value == srgb_profile()
        assert tiff.pages[0].compression == 8  # deflate


def test_print_info_of_a_jpeg_and_a_rotated_one(tmp_path: Path) -> None:
    icc = srgb_profile()
    path = saved(tmp_path / "p.jpg", Image.new("RGB", (8, 4)), icc_profile=icc, dpi=(300, 150))
    assert images.print_info(path) == images.PrintInfo(icc, (300.0, 150.0))
    exif = Image.Exif()
    exif[0x0112] = 6  # a quarter turn: the upright picture's x is the stored y
    turned = saved(tmp_path / "t.jpg", Image.new("RGB", (8, 4)), dpi=(300, 150), exif=exif)
    assert images.print_info(turned).dpi == (150.0, 300.0)
    plain = saved(tmp_path / "plain.png", Image.new("RGB", (8, 4)))
    assert images.print_info(plain) == images.PrintInfo()


def test_16_bit_colour_pngs_read_exactly_when_deep(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 65536, (9, 11, 3)).astype(np.uint16)
    path = tmp_path / "rgb16.png"
    path.write_bytes(png16(rgb, 2))
    np.testing.assert_array_equal(to_array(read_image(path, deep=True)),
                                  rgb.astype(np.float32) / np.float32(65535))
    alpha = np.full((9, 11, 1), 65535, np.uint16)
    alpha[0, 0] = 0  # transparent: white
    path.write_bytes(png16(np.concatenate([rgb, alpha], axis=2), 6))
    got = to_array(read_image(path, deep=True))
    assert got[0, 0].tolist() == [1, 1, 1]
    np.testing.assert_array_equal(got[1:], rgb[1:].astype(np.float32) / np.float32(65535))
    grey = rng.integers(0, 65536, (3, 4)).astype(np.uint16)
    grey_path = saved(tmp_path / "g16.png", Image.fromarray(grey))
    np.testing.assert_allclose(to_array(read_image(grey_path, deep=True)),
                               np.repeat(grey[..., None] / 65535, 3, axis=2), atol=1e-7)


def test_16_bit_tiffs_read_exactly_when_deep(tmp_path: Path) -> None:
    import tifffile

    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    exact = rgb.astype(np.float32) / np.float32(65535)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb",
                     planarconfig="separate")
    np.testing.assert_array_equal(to_array(read_image(tmp_path / "planar.tif", deep=True)),
                                  exact)
    tifffile.imwrite(tmp_path / "turned.tif", rgb, photometric="rgb",
                     extratags=[(274, "H", 1, 6, True)])  # Orientation: a quarter turn
    np.testing.assert_array_equal(to_array(read_image(tmp_path / "turned.tif", deep=True)),
                                  np.rot90(exact, -1))
    grey = rng.integers(0, 65536, (5, 7)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "grey.tif", grey, photometric="minisblack")
    np.testing.assert_array_equal(to_array(read_image(tmp_path / "grey.tif", deep=True)),
                                  np.repeat(grey[..., None].astype(np.float32)
                                            / np.float32(65535), 3, axis=2))
    tifffile.imwrite(tmp_path / "rgba.tif", np.concatenate(
        [rgb, np.zeros((5, 7, 1), np.uint16)], axis=2), photometric="rgb",
        extrasamples=["unassalpha"])
    assert (to_array(read_image(tmp_path / "rgba.tif", deep=True)) == 1).all()  # white
    eight = saved(tmp_path / "eight.tif", Image.new("RGB", (3, 2), (10, 20, 30)))
    assert isinstance(read_image(eight, deep=True), Image.Image)  # 8 bits: as before


def test_a_deep_image_is_resized_in_floating_point() -> None:
    """Two 16-bit levels a fifth of an 8-bit step apart stay apart through a resize."""
    array = np.full((8, 8, 3), 0.5, np.float32)
    array[:, 4:] += 0.2 / 255
    deep = images.DeepImage(array)
    small = to_array(fit_longest(deep, 4))
    assert small.shape == (4, 4, 3) and small.dtype == np.float32
    assert 0 < small[0, 3, 0] - small[0, 0, 0] < 1 / 255
    assert fit_longest(deep, 8) is deep and deep.size == (8, 8)
    assert deep.convert("L").mode == "L"  # an 8-bit Pillow image where one is needed


def test_a_failed_16_bit_write_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    for fmt, suffix in (("png16", ".png"), ("tiff16", ".tif")):
        helpers.one_line_error(lambda f=fmt, s=suffix: images.save_image(
            tmp_path / "file" / f"x{s}", np.zeros((2, 2, 3)), f), "cannot write image")


def test_text_of_a_tiff_that_jstyle_did_not_write_is_empty(tmp_path: Path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((2, 2, 3), np.uint16), photometric="rgb",
                     description="a scan")
    assert images.read_image_text(tmp_path / "a.tif") == {}
    assert images.read_image_text(saved(tmp_path / "b.jpg", Image.new("RGB", (2, 2)))) == {}
