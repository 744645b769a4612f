"""Reading, resizing and writing images: files <-> float32 RGB arrays in [0, 1].

Every mode Pillow opens becomes 8-bit RGB (the first frame of an animation):

- EXIF orientation is applied, so a photo is upright as a viewer shows it;
- grayscale (``L``, ``1``) is repeated over the three channels; palette images are
  expanded; CMYK, YCbCr, LAB and HSV are converted;
- transparent pixels (an alpha band, a palette's or a PNG's transparent colour) are
  composited onto white: alpha is not part of the style transfer;
- 16-bit images (``I;16*``, and ``I`` from a PNG) are scaled from 0..65535;
  other 32-bit integer images (``I``) from 0..255 if no value exceeds 255, else from
  0..65535 if none exceeds that, else from 0..2**31-1; float images (``F``) from
  0..1 if no value exceeds 1, else from 0..255. Values outside are clipped, NaN is 0.

With ``deep=True`` (the content, style and start images of a run), a 16-bit PNG (RGB,
RGBA or grey) or 16-bit TIFF (RGB or grey, alpha optional) is read exactly, as a
:class:`DeepImage` of float32 values ``v / 65535``, and resized in floating point: its
levels are not rounded to 8 bits on the way in. Other files, and 16-bit grey PNGs with
alpha, are read as above.

Every problem with an input file (missing, a folder, empty, unreadable, not an
image, truncated or corrupt, too large) is one :class:`JStyleError` line. Truncated
files are always refused, even if ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is set.
Images are written (:func:`save_image`) as an 8-bit PNG (Pillow), a PNG of 16 bits per
channel (jstyle's own encoder: Pillow writes 16 bits only for grey) or a 16-bit TIFF
(tifffile), each with the run's config and, given them, an ICC profile and a resolution.
Writes are atomic: an interrupted save leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import stat
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

from jstyle.errors import JStyleError
from jstyle.fileio import atomic_path
from jstyle.preprocessing import RESAMPLE_FILTER

RESAMPLE = Image.Resampling[RESAMPLE_FILTER]

#: File name suffixes jstyle reads as images from a folder (a batch, a calibration set).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff",
                                   ".webp")

#: Leading bytes of the formats people use, to tell a damaged image from a non-image.
IMAGE_SIGNATURES: tuple[bytes, ...] = (
    b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
    b"RIFF", b"\x00\x00\x01\x00",
)

#: What Pillow raises while decoding damaged data (besides OSError and its subclasses).
DECODE_ERRORS: tuple[type[Exception], ...] = (
    OSError, SyntaxError, EOFError, ValueError, struct.error, IndexError, TypeError, KeyError,
)


def _show(path: Path) -> str:
    """``path`` for a one-line message: as typed, or quoted if it holds control characters."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _to_8bit(image: Image.Image, file_format: str | None) -> Image.Image:
    """A 16/32-bit integer or float grayscale image as 8-bit ``L`` (ranges: module docstring)."""
    array = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
    top = float(array.max(initial=0.0))
    if image.mode == "F":
        peak = 1.0 if top <= 1.0 else 255.0
    elif image.mode.startswith("I;16") or file_format == "PNG":
        peak = 65535.0
    else:
        peak = 255.0 if top <= 255 else 65535.0 if top <= 65535 else 2.0**31 - 1
    return Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def to_rgb(image: Image.Image, file_format: str | None = None) -> Image.Image:
    """Any loaded Pillow image -> 8-bit RGB, transparency composited onto white.

    ``file_format`` is the format the image was read from (``image.format``, which
    copies lose): a PNG in mode ``I`` is 16-bit.
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8bit(image, file_format or image.format)
    if image.mode == "La":  # premultiplied; Pillow converts it only to LA
        image = image.convert("LA")
    bands = image.getbands()
    if "A" in bands or "a" in bands or "transparency" in image.info:
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return image.convert("RGB")


@contextlib.contextmanager
def _refuse_truncated() -> Iterator[None]:
    """Make Pillow raise on truncated data for the duration, whatever the global setting."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _check_file(path: Path) -> None:
    """Raise :class:`JStyleError` unless ``path`` is a non-empty regular file we may stat."""
    shown = _show(path)
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise JStyleError(f"image not found: {shown} (check the path)") from None
    except PermissionError:
        raise JStyleError(f"cannot read image {shown}: permission denied (check the "
                          "permissions of the file and its folders)") from None
    except (OSError, ValueError) as e:  # a name too long, an embedded NUL byte, an I/O error
        raise JStyleError(f"cannot read image {shown}: {_reason(e)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise JStyleError(f"{shown} is a folder, not an image file; give the path of an image")
    if not stat.S_ISREG(info.st_mode):
        raise JStyleError(f"{shown} is not a regular file (a device, pipe or socket); give the "
                          "path of an image file")
    if info.st_size == 0:
        raise JStyleError(f"{shown} is empty (0 bytes); re-export or re-download the image")


def _reason(error: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _looks_like_image(path: Path) -> bool:
    """Whether the file starts like a common image format (so it is damaged, not foreign)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return head.startswith(IMAGE_SIGNATURES) or head[8:12] == b"WEBP"


def _read_error(path: Path, error: BaseException) -> JStyleError:
    """The one-line error for what opening or decoding ``path`` raised."""
    shown = _show(path)
    corrupt, fix = f"{shown} is truncated or corrupt", "re-export or re-download the image"
    if isinstance(error, Image.DecompressionBombError):
        return JStyleError(
            f"{shown} is too large: more than {2 * Image.MAX_IMAGE_PIXELS} pixels (Pillow's "
            "limit against decompression bombs); shrink the image first")
    if isinstance(error, UnidentifiedImageError):
        if _looks_like_image(path):
            return JStyleError(f"{corrupt} (Pillow cannot identify it); {fix}")
        return JStyleError(f"{shown} is not an image Pillow can read (PNG, JPEG, GIF, TIFF, "
                           "WebP, ...); give the path of an image file")
    if isinstance(error, PermissionError):
        return JStyleError(f"cannot read image {shown}: permission denied (check the "
                           "permissions of the file and its folders)")
    if isinstance(error, FileNotFoundError):  # removed between the check and the read
        return JStyleError(f"image not found: {shown} (check the path)")
    if isinstance(error, MemoryError):
        return JStyleError(f"{shown} is too large to decode in memory; shrink the image first")
    if isinstance(error, OSError) and error.errno is not None:  # the system's, not Pillow's
        return JStyleError(f"cannot read image {shown}: {_reason(error)}")
    return JStyleError(f"{corrupt} ({_reason(error)}); {fix}")


class DeepImage:
    """An image read with more than 8 bits per channel (a 16-bit PNG or TIFF): float32 RGB
    ``(H, W, 3)`` in [0, 1], exact. It answers the part of Pillow's interface that jstyle's
    sizing uses (``size``, ``resize``, ``convert``); it is resized in floating point, one
    Pillow ``F`` band per channel, so that its levels are not rounded to 8 bits before the
    run. :func:`to_array` gives its array."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.asarray(array, np.float32)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``, as Pillow gives it."""
        return self.array.shape[1], self.array.shape[0]

    def resize(self, size: tuple[int, int], resample=RESAMPLE) -> DeepImage:
        """Resized to ``size`` (width, height) with ``resample``, clipped to [0, 1]."""
        if tuple(size) == self.size:
            return self
        bands = [np.asarray(Image.fromarray(np.ascontiguousarray(self.array[..., c]))
                            .resize(tuple(size), resample)) for c in range(3)]
        return DeepImage(np.clip(np.stack(bands, axis=-1), 0.0, 1.0))

    def convert(self, mode: str = "RGB") -> Image.Image:
        """An 8-bit Pillow image in ``mode`` (:func:`from_array`, then Pillow's convert)."""
        return from_array(self.array).convert(mode)


#: What Pillow's ``ImageOps.exif_transpose`` does for each EXIF orientation, on an array.
_ORIENTED = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2), 8: lambda a: np.rot90(a, 1),
}


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation of an opened image (1, upright, when it has none)."""
    try:
        value = image.getexif().get(0x0112, 1)
    except DECODE_ERRORS:  # damaged EXIF: shown as stored, as Pillow's exif_transpose does
        return 1
    return value if value in _ORIENTED else 1


def _to_deep_rgb(samples: np.ndarray, transparency=None,
                 premultiplied: bool = False) -> np.ndarray:
    """16-bit samples ``(H, W)``/``(H, W, 1..4)`` -> float32 RGB in [0, 1]: grey repeated,
    alpha (or a PNG's transparent colour) composited onto white, as 8-bit files are
    (``premultiplied``: the colour is already multiplied by the alpha)."""
    if samples.ndim == 2:
        samples = samples[..., None]
    values = samples.astype(np.float32) / np.float32(65535)
    colour, alpha = (values[..., :3], values[..., 3:]) if samples.shape[-1] in (3, 4) else \
        (values[..., :1], values[..., 1:2])
    if transparency is not None:
        key = np.atleast_1d(np.asarray(transparency, np.int64))
        hidden = np.all(samples[..., :len(key)] == key, axis=-1, keepdims=True)
        alpha = np.where(hidden, np.float32(0), alpha if alpha.size else np.float32(1))
    if alpha.size:
        colour = (colour if premultiplied else colour * alpha) + (np.float32(1) - alpha)
    return np.ascontiguousarray(np.broadcast_to(colour, (*colour.shape[:2], 3)), np.float32)


def _deep_png(path: Path, image: Image.Image) -> tuple[np.ndarray, bool] | None:
    """The samples of a 16-bit PNG, exact (uint16), and False (its alpha is straight);
    None for other PNGs. Pillow decodes
    16-bit colour to 8 bits (the high byte); decoding the same stream again with the
    little-endian raw mode gives the low bytes, the filters undone by Pillow both times."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # grey: Pillow keeps 16 bits
        image.load()
        return np.asarray(image).astype(np.uint16), False
    rawmode = image.tile[0].args if len(image.tile) == 1 else None
    if rawmode not in ("RGB;16B", "RGBA;16B"):
        return None
    image.load()
    high = np.asarray(image, np.uint16)
    with Image.open(path) as again:
        again.tile = [again.tile[0]._replace(args=rawmode.replace("16B", "16L"))]
        again.load()
        low = np.asarray(again, np.uint16)
    return high << 8 | low, False


def _deep_tiff(path: Path, image: Image.Image) -> tuple[np.ndarray, bool] | None:
    """The samples of the first page of a 16-bit grey or RGB TIFF (an extra alpha sample
    allowed), exact (uint16), and whether its alpha is premultiplied; None for any other
    TIFF."""
    bits = image.tag_v2.get(258)  # BitsPerSample
    if not bits or max(np.atleast_1d(bits)) <= 8:
        return None
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        photometric = int(page.photometric)
        if page.dtype != np.uint16 or photometric not in (1, 2):  # minisblack, RGB
            return None
        samples = page.asarray()
        axes = page.axes
        premultiplied = 1 in np.atleast_1d(page.tags.valueof(338, 0))  # ExtraSamples
    if axes == "SYX":
        samples, axes = np.moveaxis(samples, 0, -1), "YXS"
    count = 1 if samples.ndim == 2 else samples.shape[-1]
    if axes not in ("YX", "YXS") or count not in ((1, 2) if photometric == 1 else (3, 4)):
        return None
    return samples, premultiplied and count in (2, 4)


def _read_deep(path: Path, image: Image.Image) -> DeepImage | None:
    """An opened 16-bit PNG or TIFF as an upright :class:`DeepImage`; None for others."""
    if image.format == "PNG":
        found = _deep_png(path, image)
    elif image.format == "TIFF":
        found = _deep_tiff(path, image)
    else:
        return None
    if found is None:
        return None
    samples, premultiplied = found
    rgb = _to_deep_rgb(samples, image.info.get("transparency") if image.format == "PNG"
                       else None, premultiplied)
    turn = _ORIENTED.get(_orientation(image))
    return DeepImage(np.ascontiguousarray(turn(rgb)) if turn else rgb)


def read_image(path: str | Path, deep: bool = False) -> Image.Image | DeepImage:
    """Open an image file as an upright RGB Pillow image (first frame of an animation);
    with ``deep``, a 16-bit PNG or TIFF as an exact :class:`DeepImage` instead.

    Raises :class:`JStyleError` (one line: the problem and the fix) for every bad file.
    """
    path = Path(path)
    _check_file(path)
    try:
        with _refuse_truncated(), Image.open(path) as image:
            if deep and (found := _read_deep(path, image)) is not None:
                return found
            image.load()
            file_format = image.format
            image = ImageOps.exif_transpose(image)  # a copy, independent of the file
    except (Image.DecompressionBombError, MemoryError, *DECODE_ERRORS) as e:
        raise _read_error(path, e) from None
    return to_rgb(image, file_format)


def to_array(image: Image.Image | DeepImage) -> np.ndarray:
    """RGB Pillow image -> float32 ``(H, W, 3)`` in [0, 1] (a :class:`DeepImage`: its array)."""
    if isinstance(image, DeepImage):
        return image.array.copy()
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def from_array(array: np.ndarray) -> Image.Image:
    """Float RGB in [0, 1] ``(H, W, 3)`` -> 8-bit RGB Pillow image (values clipped, NaN 0)."""
    from jstyle.preprocessing import to_8bit

    return Image.fromarray(to_8bit(array), "RGB")


def fitted_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(width, height)`` scaled so that the longest side is ``size``; the other side is
    rounded and at least 1 pixel."""
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_longest(image: Image.Image, size: int) -> Image.Image:
    """Resize so that the longest side is ``size`` pixels, keeping the aspect ratio."""
    shape = fitted_size(*image.size, size)
    return image if shape == image.size else image.resize(shape, RESAMPLE)


def resize_to(image: Image.Image, height: int, width: int) -> Image.Image:
    """Resize to exactly ``height`` x ``width`` (the paper resizes the style image so)."""
    return image if image.size == (width, height) else image.resize((width, height), RESAMPLE)


def read_image_text(path: Path) -> dict[str, str]:
    """The text a jstyle image carries: a PNG's text chunks, or the mapping a TIFF written
    by :func:`save_image` holds as JSON in its ImageDescription; empty for other images."""
    _check_file(path)
    try:
        with _refuse_truncated(), Image.open(path) as image:
            image.load()
            if image.format != "TIFF":
                return dict(getattr(image, "text", {}) or {})
            description = image.tag_v2.get(270)  # ImageDescription
    except (Image.DecompressionBombError, MemoryError, *DECODE_ERRORS) as e:
        raise _read_error(path, e) from None
    try:
        values = json.loads(description) if isinstance(description, str) else None
    except ValueError:
        return {}
    if not isinstance(values, dict):
        return {}
    return {k: v for k, v in values.items() if isinstance(v, str)}


class PrintInfo(NamedTuple):
    """What an output carries over from the content photo for printing: its ICC profile,
    embedded as it is (the pixels keep the photo's colour space: nothing is converted), and
    its resolution in dots per inch (x, y); None where the photo has none."""

    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None


def print_info(path: str | Path) -> PrintInfo:
    """The ICC profile and resolution of an image file, as Pillow reads them (JPEG, PNG,
    TIFF, WebP, ...); a resolution that is not two positive numbers is none, and its axes
    are swapped where the EXIF orientation turns the picture a quarter (as :func:`read_image`
    does)."""
    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as image:
            icc = image.info.get("icc_profile") or None
            dpi = image.info.get("dpi")
            turned = _orientation(image) in (5, 6, 7, 8)
    except (Image.DecompressionBombError, MemoryError, *DECODE_ERRORS) as e:
        raise _read_error(path, e) from None
    try:
        dpi = (float(dpi[0]), float(dpi[1])) if dpi is not None else None
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        dpi = None
    if dpi is not None and not all(math.isfinite(d) and d > 0 for d in dpi):
        dpi = None
    if dpi is not None and turned:
        dpi = dpi[::-1]
    return PrintInfo(bytes(icc) if icc else None, dpi)


def _written(path: str | Path, write) -> Path:
    """``write(tmp)`` to a temporary file, renamed onto ``path`` (see :func:`save_png`)."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except OSError as e:
        raise JStyleError(f"cannot write image {_show(Path(path))}: {_reason(e)} (check free "
                          "space and the folder's permissions)") from None
    return Path(path)


def save_png(path: str | Path, array: np.ndarray, text: dict[str, str] | None = None,
             info: PrintInfo | None = None) -> Path:
    """Write an RGB array as an 8-bit PNG atomically (temporary file, then rename); text
    chunks, an ICC profile and a resolution (``info``) optional.

    An interrupted or failed write leaves ``path`` as it was (absent, or its old content)
    and no temporary file; an OS error (disk full, no permission) is a :class:`JStyleError`.
    """
    chunks = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        chunks.add_itxt(key, value)
    options = {}
    if info is not None and info.icc_profile:
        options["icc_profile"] = info.icc_profile
    if info is not None and info.dpi:
        options["dpi"] = info.dpi
    image = from_array(array)
    return _written(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=chunks, **options))


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + \
        struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _filtered_rows(raw: np.ndarray, bpp: int, rows: int = 64) -> Iterator[bytes]:
    """PNG's scanlines of ``raw`` (uint8, one row of bytes each), each under the filter
    (none, sub, up, average or Paeth) whose output has the least sum of absolute values
    (the PNG specification's suggested heuristic), ``rows`` rows at a time."""
    height, width = raw.shape
    for top in range(0, height, rows):
        x = raw[top:top + rows].astype(np.int16)
        b = np.vstack([raw[top - 1:top].astype(np.int16) if top else
                       np.zeros((1, width), np.int16), x[:-1]])
        a = np.pad(x, ((0, 0), (bpp, 0)))[:, :width]
        c = np.pad(b, ((0, 0), (bpp, 0)))[:, :width]
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        candidates = np.stack([x, x - a, x - b, x - (a + b) // 2, x - paeth]) & 0xFF
        cost = np.minimum(candidates, 256 - candidates).sum(axis=2)  # as signed bytes
        best = cost.argmin(axis=0)
        chosen = candidates[best, np.arange(len(x))].astype(np.uint8)
        lines = np.concatenate([best[:, None].astype(np.uint8), chosen], axis=1)
        yield lines.tobytes()


def png16_bytes(pixels: np.ndarray, text: dict[str, str] | None = None,
                info: PrintInfo | None = None) -> bytes:
    """A PNG of 16 bits per channel (colour type 2, RGB) holding ``pixels`` (uint16
    ``(H, W, 3)``), with iTXt chunks for ``text``, and iCCP and pHYs chunks for ``info``'s
    ICC profile and resolution. Pillow writes 16 bits only for grey images, so jstyle
    writes this format itself."""
    height, width = pixels.shape[:2]
    raw = np.ascontiguousarray(pixels, ">u2").view(np.uint8).reshape(height, width * 6)
    out = [b"\x89PNG\r\n\x1a\n",
           _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))]
    if info is not None and info.icc_profile:
        out.append(_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(info.icc_profile)))
    if info is not None and info.dpi:  # pixels per metre, rounded as Pillow rounds them
        out.append(_chunk(b"pHYs", struct.pack(">IIB", *(int(d / 0.0254 + 0.5)
                                                         for d in info.dpi), 1)))
    for key, value in (text or {}).items():
        out.append(_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0"
                          + value.encode("utf-8")))
    packer = zlib.compressobj(6)
    data = b"".join(packer.compress(lines) for lines in _filtered_rows(raw, 6)) + \
        packer.flush()
    step = 1 << 20
    out += [_chunk(b"IDAT", data[i:i + step]) for i in range(0, max(len(data), 1), step)]
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def _save_tiff16(path: Path, pixels: np.ndarray, text: dict[str, str] | None,
                 info: PrintInfo | None) -> None:
    """A TIFF of 16 bits per channel (RGB, deflate with the horizontal predictor) holding
    ``pixels``; ``text`` as JSON in ImageDescription, ``info``'s ICC profile in tag 34675
    and its resolution in X/YResolution (inches)."""
    import tifffile

    dpi = info.dpi if info is not None else None
    tifffile.imwrite(path, pixels, photometric="rgb", compression="zlib", predictor=True,
                     metadata=None, software="jstyle",
                     description=json.dumps(text) if text else None,
                     iccprofile=info.icc_profile if info is not None else None,
                     resolution=dpi, resolutionunit="INCH" if dpi else None)


def save_image(path: str | Path, array: np.ndarray, image_format: str = "png8",
               text: dict[str, str] | None = None, info: PrintInfo | None = None) -> Path:
    """Write a float RGB array as ``image_format`` (:data:`jstyle.options.OUTPUT_FORMATS`),
    quantised once at its bit depth (:func:`jstyle.preprocessing.quantize`), atomically as
    :func:`save_png` does; ``text`` (the run's config) and ``info`` (ICC profile, DPI) go
    into the file."""
    from jstyle.options import OUTPUT_BITS
    from jstyle.preprocessing import quantize

    if image_format == "png8":
        return save_png(path, array, text, info)
    pixels = quantize(array, OUTPUT_BITS[image_format])
    if image_format == "png16":
        data = png16_bytes(pixels, text, info)
        return _written(path, lambda tmp: tmp.write_bytes(data))
    if image_format == "tiff16":
        return _written(path, lambda tmp: _save_tiff16(tmp, pixels, text, info))
    raise ValueError(f"unknown image format {image_format!r}")
