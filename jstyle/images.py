"""Reading, resizing and writing images: files <-> float32 RGB arrays in [0, 1].

Every mode Pillow opens becomes RGB: EXIF orientation is applied, grayscale is
repeated over the three channels, palette images are expanded, and transparent
pixels are composited onto white (alpha is not part of the style transfer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from jstyle.errors import JStyleError
from jstyle.fileio import atomic_path

RESAMPLE = Image.Resampling.LANCZOS


def _rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return image.convert("RGB")


def read_image(path: str | Path) -> Image.Image:
    """Open an image file as an RGB Pillow image (first frame of an animation)."""
    path = Path(path)
    if not path.exists():
        raise JStyleError(f"image not found: {path}")
    if path.is_dir():
        raise JStyleError(f"{path} is a folder, not an image file")
    try:
        with Image.open(path) as image:
            image.load()
            return _rgb(image)
    except UnidentifiedImageError:
        raise JStyleError(f"{path} is not an image Pillow can read (PNG, JPEG, ...)") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data, permissions
        raise JStyleError(f"cannot read image {path}: {e}") from None


def to_array(image: Image.Image) -> np.ndarray:
    """RGB Pillow image -> float32 ``(H, W, 3)`` in [0, 1]."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def from_array(array: np.ndarray) -> Image.Image:
    """Float RGB in [0, 1] ``(H, W, 3)`` -> 8-bit RGB Pillow image (values clipped)."""
    pixels = np.clip(np.asarray(array, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def fit_longest(image: Image.Image, size: int) -> Image.Image:
    """Resize so that the longest side is ``size`` pixels, keeping the aspect ratio."""
    w, h = image.size
    scale = size / max(w, h)
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image if shape == image.size else image.resize(shape, RESAMPLE)


def resize_to(image: Image.Image, height: int, width: int) -> Image.Image:
    """Resize to exactly ``height`` x ``width`` (the paper resizes the style image so)."""
    return image if image.size == (width, height) else image.resize((width, height), RESAMPLE)


def save_png(path: str | Path, array: np.ndarray, text: dict[str, str] | None = None) -> Path:
    """Write an RGB array as PNG atomically (temporary file, then rename); text chunks optional."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    with atomic_path(path) as tmp:
        from_array(array).save(tmp, format="PNG", pnginfo=info)
    return Path(path)
