"""detect_text with PP-OCRv4 on rendered lines, a printed page and photos without text."""

from __future__ import annotations

import io

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from models.detect_text.ppocr import PpOcrV4TextReader
from models.images import decode_image, inspect_image
from scripts.rendered_text import LINES, character_error_rate, render_pages
from tests.conftest import encode, model_options, post_api

pytestmark = pytest.mark.slow  # real models or live servers

URL = "/api/v2/"


@pytest.fixture(scope="module")
def reader() -> PpOcrV4TextReader:
    model = PpOcrV4TextReader(torch.device("cpu"), model_options(onnx_threads=2, onnx_instances=1))
    model.load()
    return model


def read(reader: PpOcrV4TextReader, data: bytes) -> list[str]:
    image = decode_image(data, inspect_image(data, 10**9), reader.input_max_side)
    (lines,) = reader.predict([reader.preprocess(image)])
    return [line.text for line in lines]


def test_rendered_lines_are_read_with_spaces_in_order(reader: PpOcrV4TextReader) -> None:
    pages = render_pages()
    assert sum(len(page.lines) for page in pages) == len(LINES) >= 40
    found, expected = [], []
    for page in pages:
        lines = read(reader, page.image)
        assert len(lines) == len(page.lines), (lines, page.lines)  # every line, no extra
        found.append("\n".join(lines))
        expected.append("\n".join(page.lines))
    # Spaces count: "Welcome toHarbourStreetMarket" would be 3 errors.
    assert character_error_rate(found, expected) <= 0.02


def test_printed_page_gives_english_words(reader: PpOcrV4TextReader) -> None:
    import skimage.data

    text = " ".join(read(reader, encode(skimage.data.page(), "PNG"))).lower()
    for word in ("region-based segmentation", "markers", "background", "histogram"):
        assert word in text, text


def test_photos_without_text_give_nothing(
    reader: PpOcrV4TextReader, reference_photos: dict[str, Image.Image]
) -> None:
    for name in ("astronaut", "chelsea", "coffee", "china", "flower"):
        assert read(reader, encode(reference_photos[name], "PNG")) == [], name


def test_batch_equals_single_calls(reader: PpOcrV4TextReader) -> None:
    pages = render_pages()[:4]
    items = []
    for page in pages:
        image = Image.open(io.BytesIO(page.image)).convert("RGB")
        data = encode(image.resize((640, 256)), "PNG")  # one size: they share a call
        items.append(reader.preprocess(decode_image(data, inspect_image(data, 10**9))))
    batched = reader.predict(items)
    for item, in_batch in zip(items, batched, strict=True):
        (single,) = reader.predict([item])
        assert [line.text for line in single] == [line.text for line in in_batch]
        for a, b in zip(single, in_batch, strict=True):
            assert abs(a.confidence - b.confidence) < 0.02


def test_api_lines_polygons_and_text(client: TestClient, apikey: str) -> None:
    page = render_pages()[0]
    body = post_api(client, {"apikey": apikey, "type": "detect_text"}, page.image)
    assert body["status"] == 200, body
    data = body["data"]
    assert [line["text"] for line in data["objects"]] == list(page.lines)
    assert data["text"] == "\n".join(page.lines)
    width, height = data["image"]["width"], data["image"]["height"]
    previous_top = -1
    for line in data["objects"]:
        assert 50 <= line["confidence"] <= 100
        box, polygon = line["box"], line["polygon"]
        assert len(polygon) == 4 and all(0 <= x <= width and 0 <= y <= height for x, y in polygon)
        assert box["left"] == min(x for x, _ in polygon)
        assert box["top"] + box["height"] == max(y for _, y in polygon)
        assert box["top"] > previous_top
        previous_top = box["top"]
    # Answered again from the store, data.text included.
    again = client.post(
        URL, data={"apikey": apikey, "type": "detect_text"}, files={"file": page.image}
    ).json()["data"]
    assert again["cached"] is True and again["text"] == data["text"]
