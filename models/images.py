"""Images as the models see them: format by magic bytes, pixel limit read from the header
before decoding, EXIF orientation, every PNG/JPEG mode to 8-bit RGB, and JPEG draft decoding
at a reduced scale. Failures raise :class:`ImageError`; what a client is told is decided at
the HTTP boundary (server/errors.py)."""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass
from enum import Enum

import numpy as np
from PIL import Image

# Our own pixel limit (checked from the header) replaces Pillow's global one.
Image.MAX_IMAGE_PIXELS = None

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

# EXIF orientations that swap width and height once applied.
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}


class ImageErrorKind(Enum):
    """Why an image cannot be analysed. Value: the words for a person (e.g. the operator
    enrolling gallery photos)."""

    INVALID_FILE = "invalid file"  # truncated, corrupt, or empty
    TOO_LARGE = "image size too large"  # more pixels than allowed
    UNSUPPORTED_FORMAT = "invalid file format"  # neither PNG nor JPEG


class ImageError(Exception):
    def __init__(self, kind: ImageErrorKind):
        super().__init__(kind.value)
        self.kind = kind


@dataclass(frozen=True)
class ImageInfo:
    """What is known of an upload without decoding its pixels."""

    format: str  # "png" or "jpeg"
    width: int  # as displayed, after EXIF orientation
    height: int
    sha256: str
    size_bytes: int
    # Bytes the decoded pixels may hold at most at once while decoding (from the header's
    # mode and size), for budgeting memory before any pixel is decoded.
    decode_bytes: int = 0

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
    """Tells PNG from JPEG by the bytes; anything else (GIF, WebP, PDF...) is refused."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    raise ImageError(ImageErrorKind.UNSUPPORTED_FORMAT)


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Reads format and size from the header only: refused before any pixel is decoded."""
    if not data:
        raise ImageError(ImageErrorKind.INVALID_FILE)
    fmt = sniff_format(data)
    image = _open(data, fmt)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(ImageErrorKind.INVALID_FILE)
    if width * height > max_pixels:
        raise ImageError(ImageErrorKind.TOO_LARGE)
    decode_bytes = width * height * _decode_bytes_per_pixel(image.mode)
    if _orientation(image) in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return ImageInfo(
        format=fmt,
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        decode_bytes=decode_bytes,
    )


def _decode_bytes_per_pixel(mode: str) -> int:
    """Full-size bytes per pixel while decoding a header's mode: the decoded image, plus the
    8-bit copy of a 16-bit one (the rest is made after reducing to the model's size)."""
    if mode.startswith("I") or mode == "F":
        return 10  # 16/32-bit: the image, a 32-bit array, an 8-bit one and its RGB
    return 4  # up to RGBA; palettes with transparency are expanded to RGBA


def decode_image(data: bytes, info: ImageInfo, max_side: int | None = None) -> DecodedImage:
    """Decodes to RGB as displayed. With ``max_side``, a JPEG is decoded at the smallest DCT
    scale whose longest side is still at least ``max_side`` (Pillow's draft mode), and any
    other image is reduced right after decoding by the largest whole factor that keeps its
    longest side at least ``max_side`` (box averaging, as the DCT scaling does), before the
    conversion to RGB: only that much stays in memory while the image waits for its model."""
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
        raise ImageError(ImageErrorKind.INVALID_FILE) from exc
    orientation = _orientation(image)  # read before reducing, which drops the EXIF data
    if max_side is not None:
        image = _reduce(image, max_side)
    image = _apply_orientation(image, orientation)
    return DecodedImage(info=info, rgb=to_rgb(image))


_REDUCE_BAND_ROWS = 256
# Modes Image.reduce works on; others are converted to RGB(A) at full size first.
_REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "RGBa", "La", "I", "F"}


def _reduce(image: Image.Image, max_side: int) -> Image.Image:
    factor = max(image.size) // max_side
    if factor < 2:
        return image
    if image.mode not in _REDUCIBLE_MODES:
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    # In bands: Pillow premultiplies an RGBA/LA image into a full-size copy before reducing
    # it; a band of rows at a time keeps that copy small. Bands are whole multiples of the
    # factor, so the result is the same as one reduce of the whole image.
    width, height = image.size
    reduced = Image.new(image.mode, (-(-width // factor), -(-height // factor)))
    band = factor * max(1, _REDUCE_BAND_ROWS // factor)
    for top in range(0, height, band):
        part = image.crop((0, top, width, min(top + band, height))).reduce(factor)
        reduced.paste(part, (0, top // factor))
    return reduced


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
        # Over white, without full-size RGBA copies: white, the image pasted through its alpha.
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _open(data: bytes, fmt: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data), formats=[fmt.upper()])
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageError(ImageErrorKind.INVALID_FILE) from exc


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:
        return 1


# EXIF orientation → the transposition that shows the image upright (as ImageOps.exif_transpose).
_TRANSPOSITIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSITIONS.get(orientation)
    return image if method is None else image.transpose(method)
