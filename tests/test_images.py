"""Upload decoding: formats by their bytes, bombs, broken files, orientation, every mode."""

from __future__ import annotations

import io
import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from models.images import ImageError, decode_image, inspect_image, to_rgb
from server.errors import api_error
from tests.conftest import encode, post_api

MAX_PIXELS = 100_000_000


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG that claims to be width x height pixels of 1-bit gray (all zeros)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def post(client: TestClient, apikey: str, file: bytes) -> dict:
    return post_api(client, {"apikey": apikey, "type": "detect_faces"}, file)


def test_png_decompression_bomb_is_413(client: TestClient, apikey: str) -> None:
    bomb = png_bomb(60_000, 60_000)
    assert len(bomb) < 200_000
    body = post(client, apikey, bomb)
    assert (body["status"], body["status_message"]) == (413, "Image size too large")


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PDF", "BMP", "TIFF"])
def test_other_formats_are_415(client: TestClient, apikey: str, astronaut, fmt: str) -> None:
    data = encode(astronaut.convert("RGB"), fmt)
    body = post(client, apikey, data)
    assert (body["status"], body["status_message"]) == (415, "Invalid file format")


def test_truncated_and_corrupt_are_412(client: TestClient, apikey: str, astronaut) -> None:
    jpeg = encode(astronaut)
    png = encode(astronaut, "PNG")
    corrupt = bytearray(png)
    corrupt[100:400] = b"\x00" * 300
    for data in (
        jpeg[: len(jpeg) * 2 // 3],
        png[: len(png) // 2],
        bytes(corrupt),
        b"\xff\xd8\xff",
        b"",
    ):
        body = post(client, apikey, data)
        assert (body["status"], body["status_message"]) == (412, "Invalid file"), data[:8]


@pytest.mark.slow
def test_exif_rotated_photo_gives_displayed_coordinates(
    client: TestClient, apikey: str, astronaut: Image.Image
) -> None:
    # Stored rotated 90° clockwise with orientation 8 (displayed = rotate 90° back): a
    # viewer shows the upright astronaut, so boxes must match the upright photo.
    upright = post(client, apikey, encode(astronaut, quality=95))["data"]["objects"][0]["box"]
    stored = astronaut.transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8
    body = post(client, apikey, encode(stored, quality=95, exif=exif.tobytes()))
    assert body["data"]["image"]["width"] == 512
    box = body["data"]["objects"][0]["box"]
    for side in ("left", "top", "width", "height"):
        assert abs(box[side] - upright[side]) <= 3, (box, upright)
    # The same photo without the tag is sideways: the face is elsewhere.
    sideways = post(client, apikey, encode(stored, quality=95))["data"]["objects"]
    assert not sideways or abs(sideways[0]["box"]["left"] - upright["left"]) > 20


def test_inspect_reads_size_without_decoding() -> None:
    bomb = png_bomb(20_000, 20_000)
    info = inspect_image(bomb, MAX_PIXELS * 10)
    assert (info.width, info.height, info.format) == (20_000, 20_000, "png")
    with pytest.raises(ImageError) as refused:
        inspect_image(bomb, MAX_PIXELS)
    # The client's view, through the one error table.
    caught = SimpleNamespace(value=api_error(refused.value))
    assert caught.value.status == 413


def _roundtrip(image: Image.Image, fmt: str) -> Image.Image:
    data = encode(image, fmt)
    return decode_image(data, inspect_image(data, MAX_PIXELS)).rgb


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    ramp = (np.arange(256 * 64, dtype=np.uint16).reshape(64, 256) * 4).astype(np.uint16)
    rgb = np.asarray(_roundtrip(Image.fromarray(ramp), "PNG"))
    assert rgb.shape == (64, 256, 3)
    expected = (ramp >> 8).astype(np.uint8)
    assert np.array_equal(rgb[..., 0], expected)


def test_modes_become_rgb() -> None:
    base = Image.new("RGB", (40, 30), (200, 30, 60))
    rgba = base.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: shown over white
    cases = {
        "L": (base.convert("L"), "PNG"),
        "P": (base.convert("P"), "PNG"),
        "RGBA": (rgba, "PNG"),
        "LA": (base.convert("LA"), "PNG"),
        "CMYK": (base.convert("CMYK"), "JPEG"),
        "L-jpeg": (base.convert("L"), "JPEG"),
    }
    for name, (image, fmt) in cases.items():
        rgb = _roundtrip(image, fmt)
        assert rgb.mode == "RGB" and rgb.size == (40, 30), name
    assert _roundtrip(rgba, "PNG").getpixel((5, 5)) == (255, 255, 255)
    red = _roundtrip(base.convert("CMYK"), "JPEG").getpixel((5, 5))
    assert red[0] > 150 and red[1] < 90, red


def test_to_rgb_palette_with_transparency() -> None:
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 0
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)


def test_draft_decoding_keeps_displayed_size(astronaut: Image.Image) -> None:
    big = astronaut.resize((2048, 2048))
    data = encode(big, quality=90)
    info = inspect_image(data, MAX_PIXELS)
    draft = decode_image(data, info, max_side=600)
    assert 600 <= draft.rgb.width < 2048 and draft.info.width == 2048
    assert draft.scale == draft.rgb.width / 2048
    assert io.BytesIO(data).getbuffer().nbytes == info.size_bytes
