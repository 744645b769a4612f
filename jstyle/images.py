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

Every problem with an input file (missing, a folder, empty, unreadable, not an
image, truncated or corrupt, too large) is one :class:`JStyleError` line. Truncated
files are always refused, even if ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is set.
Writes are atomic: an interrupted save leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

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


def read_image(path: str | Path) -> Image.Image:
    """Open an image file as an upright RGB Pillow image (first frame of an animation).

    Raises :class:`JStyleError` (one line: the problem and the fix) for every bad file.
    """
    path = Path(path)
    _check_file(path)
    try:
        with _refuse_truncated(), Image.open(path) as image:
            image.load()
            file_format = image.format
            image = ImageOps.exif_transpose(image)  # a copy, independent of the file
    except (Image.DecompressionBombError, MemoryError, *DECODE_ERRORS) as e:
        raise _read_error(path, e) from None
    return to_rgb(image, file_format)


def to_array(image: Image.Image) -> np.ndarray:
    """RGB Pillow image -> float32 ``(H, W, 3)`` in [0, 1]."""
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


def read_png_text(path: Path) -> dict[str, str]:
    """The text chunks of a PNG file (empty for other images)."""
    _check_file(path)
    try:
        with _refuse_truncated(), Image.open(path) as image:
            image.load()
            return dict(getattr(image, "text", {}) or {})
    except (Image.DecompressionBombError, MemoryError, *DECODE_ERRORS) as e:
        raise _read_error(path, e) from None


def save_png(path: str | Path, array: np.ndarray, text: dict[str, str] | None = None) -> Path:
    """Write an RGB array as PNG atomically (temporary file, then rename); text chunks optional.

    An interrupted or failed write leaves ``path`` as it was (absent, or its old content)
    and no temporary file; an OS error (disk full, no permission) is a :class:`JStyleError`.
    """
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    image = from_array(array)
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG", pnginfo=info)
    except OSError as e:
        raise JStyleError(f"cannot write image {_show(Path(path))}: {_reason(e)} (check free "
                          "space and the folder's permissions)") from None
    return Path(path)
