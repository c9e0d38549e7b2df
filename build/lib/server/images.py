"""Decoding of uploaded images: format by magic bytes, pixel limit before decoding, EXIF
orientation, every PNG/JPEG mode to 8-bit RGB, and JPEG draft decoding at a reduced scale."""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from server.errors import ApiError, ErrorKind

# Our own pixel limit (checked from the header) replaces Pillow's global one.
Image.MAX_IMAGE_PIXELS = None

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

# EXIF orientations that swap width and height once applied.
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}


@dataclass(frozen=True)
class ImageInfo:
    """What is known of an upload without decoding its pixels."""

    format: str  # "png" or "jpeg"
    width: int  # as displayed, after EXIF orientation
    height: int
    sha256: str
    size_bytes: int

    def as_dict(self) -> dict[str, object]:
        return {
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class DecodedImage:
    """An upload decoded to RGB, oriented as displayed.

    ``rgb`` may be smaller than the displayed image when it was decoded in JPEG draft mode;
    ``scale`` = rgb width / displayed width, so a coordinate in ``rgb`` divided by ``scale``
    is a coordinate in the displayed image.
    """

    info: ImageInfo
    rgb: Image.Image

    @property
    def scale(self) -> float:
        return self.rgb.width / self.info.width


def sniff_format(data: bytes) -> str:
    """Tells PNG from JPEG by the bytes; anything else (GIF, WebP, PDF...) is 415."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    raise ApiError(ErrorKind.INVALID_FORMAT)


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Reads format and size from the header only: 412/413/415 before any pixel is decoded."""
    if not data:
        raise ApiError(ErrorKind.INVALID_FILE)
    fmt = sniff_format(data)
    image = _open(data, fmt)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ApiError(ErrorKind.INVALID_FILE)
    if width * height > max_pixels:
        raise ApiError(ErrorKind.IMAGE_TOO_LARGE)
    if _orientation(image) in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return ImageInfo(
        format=fmt,
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )


def decode_image(data: bytes, info: ImageInfo, max_side: int | None = None) -> DecodedImage:
    """Decodes to RGB as displayed. With ``max_side``, a JPEG is decoded at the smallest DCT
    scale whose longest side is still at least ``max_side`` (Pillow's draft mode)."""
    image = _open(data, info.format)
    try:
        if info.format == "jpeg" and max_side is not None:
            longest = max(image.size)
            if longest > max_side:
                factor = max_side / longest
                image.draft(
                    "RGB",
                    (math.ceil(image.width * factor), math.ceil(image.height * factor)),
                )
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ApiError(ErrorKind.INVALID_FILE) from exc
    image = _apply_orientation(image)
    return DecodedImage(info=info, rgb=to_rgb(image))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PNG/JPEG mode to 8-bit RGB: 16-bit scaled down, transparency over white, CMYK and
    palettes converted."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: Pillow's convert clips at 255; scale the range down instead.
        array = np.asarray(image, dtype=np.uint32)
        return Image.fromarray((array >> 8).clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float32)
        return Image.fromarray(array.clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _open(data: bytes, fmt: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data), formats=[fmt.upper()])
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ApiError(ErrorKind.INVALID_FILE) from exc


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:
        return 1


def _apply_orientation(image: Image.Image) -> Image.Image:
    if _orientation(image) == 1:
        return image
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image
