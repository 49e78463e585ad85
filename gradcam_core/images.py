"""Decoding images safely: any source, any mode, in, one upright RGB picture out.

Every failure is a ``ValueError`` with a sentence a student can act on, never a PIL traceback.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["MAX_PIXELS", "MIN_SIDE", "ImageSource", "load_image"]

#: Larger images are refused before their pixels are decoded (decompression bombs).
MAX_PIXELS = 40_000_000
#: Smaller images carry too little for a CNN's feature maps to mean anything.
MIN_SIDE = 32

ImageSource = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


def load_image(source: ImageSource) -> Image.Image:
    """Decode ``source`` into an upright 8-bit RGB PIL image.

    Accepts a path, encoded bytes, a PIL image or an ``(H, W, 3)`` / ``(H, W)`` uint8 array. EXIF
    orientation is applied; L, LA, P, RGBA (composited on white), CMYK, 16-bit and float modes
    become RGB; an animated image gives its first frame.

    Raises:
        ValueError: empty, truncated or non-image data, more than :data:`MAX_PIXELS` pixels, or a
            side shorter than :data:`MIN_SIDE`.

    Example:
        >>> load_image("assets/images/cat_dog.png").size
        (224, 224)
    """
    if isinstance(source, np.ndarray):
        return _checked_size(_from_array(source))
    if isinstance(source, Image.Image):
        # A PIL image may still be lazy (``Image.open`` reads only the header): check its size
        # before anything decodes its pixels.
        _checked_size(source)
        return _checked_size(_to_rgb(_upright(source)))
    data = _read_bytes(source)
    with _open(data) as image:
        _checked_size(image)
        try:
            image.seek(0)
            image.load()
            return _to_rgb(_upright(image))
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"The image is truncated or damaged and cannot be decoded ({error}).") from None


def _read_bytes(source: str | os.PathLike | bytes) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"There is no image file at {str(path)!r}.")
        data = path.read_bytes()
    else:
        raise ValueError(f"Cannot read an image from a {type(source).__name__}.")
    if not data:
        raise ValueError("The file is empty.")
    return data


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(_too_large_message()) from None
    except UnidentifiedImageError:
        raise ValueError(
            "This file is not an image that can be read (PNG, JPEG, GIF, BMP, TIFF or WebP)."
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"The image is damaged and cannot be opened ({error}).") from None


def _checked_size(image: Image.Image) -> Image.Image:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ValueError(_too_large_message(width, height))
    if min(width, height) < MIN_SIDE:
        raise ValueError(
            f"The image is {width}x{height} pixels; it needs at least {MIN_SIDE} pixels a side."
        )
    return image


def _too_large_message(width: int | None = None, height: int | None = None) -> str:
    size = f" ({width}x{height} pixels)" if width else ""
    return (
        f"The image is too large{size}: at most {MAX_PIXELS // 1_000_000} megapixels are accepted, "
        "to protect the app from decompression bombs."
    )


def _upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        return image  # an unreadable EXIF block leaves the picture as it was stored


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("P", "L", "RGB") and "transparency" in image.info:
        # A transparent palette entry, grey level or colour (PNG tRNS, GIF): composite it too.
        image = image.convert("RGBA")
    if image.mode == "RGB":
        return image.copy()
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit samples: PIL has no 16-bit to 8-bit conversion that keeps the range.
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        span = np.ptp(pixels) or 1.0
        return Image.fromarray(((pixels - pixels.min()) / span * 255).round().astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise ValueError(f"An image array must be uint8, got {array.dtype}.")
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"An image array must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}.")
    return _to_rgb(Image.fromarray(np.ascontiguousarray(array)))
