"""detect_faces with the real MTCNN on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from models.detect_faces.mtcnn import MtcnnFaceDetector
from models.images import decode_image, inspect_image
from tests.conftest import encode, model_options, post_api

pytestmark = pytest.mark.slow  # real models or live servers

# Face boxes [x1, y1, x2, y2] measured with MTCNN on these photos (docs/models.md).
ASTRONAUT_BOX = (181, 62, 268, 172)
GRACE_HOPPER_BOX = (174, 120, 356, 341)


def faces(client: TestClient, apikey: str, data: bytes) -> list[dict]:
    body = post_api(client, {"apikey": apikey, "type": "detect_faces"}, data)
    assert body["status"] == 200, body
    return body["data"]["objects"]


def corners(box: dict) -> tuple[int, int, int, int]:
    return (box["left"], box["top"], box["left"] + box["width"], box["top"] + box["height"])


def assert_box_near(box: dict, expected: tuple[int, ...], tolerance: int) -> None:
    for got, want in zip(corners(box), expected, strict=True):
        assert abs(got - want) <= tolerance, (corners(box), expected)


@pytest.fixture
def detector() -> MtcnnFaceDetector:
    model = MtcnnFaceDetector(torch.device("cpu"), model_options())
    model.load()
    return model


def test_astronaut_face(client: TestClient, apikey: str, astronaut: Image.Image) -> None:
    found = faces(client, apikey, encode(astronaut, "PNG"))
    assert len(found) == 1
    face = found[0]
    assert face["confidence"] >= 99.0
    assert_box_near(face["box"], ASTRONAUT_BOX, 2)
    marks = face["landmarks"]
    assert set(marks) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    # Left eye is the one on the image's left; the nose lies between eyes and mouth.
    assert marks["left_eye"]["x"] < marks["right_eye"]["x"]
    assert marks["mouth_left"]["x"] < marks["mouth_right"]["x"]
    assert marks["left_eye"]["y"] < marks["nose"]["y"] < marks["mouth_left"]["y"]
    left, top, right, bottom = corners(face["box"])
    for point in marks.values():
        assert left <= point["x"] <= right and top <= point["y"] <= bottom


def test_grace_hopper_face(client: TestClient, apikey: str, grace_hopper: Image.Image) -> None:
    found = faces(client, apikey, encode(grace_hopper, quality=95))
    assert len(found) == 1 and found[0]["confidence"] >= 99.0
    assert_box_near(found[0]["box"], GRACE_HOPPER_BOX, 4)


def test_photos_without_faces(client: TestClient, apikey: str, coffee: Image.Image) -> None:
    import skimage.data

    assert faces(client, apikey, encode(coffee)) == []
    assert faces(client, apikey, encode(skimage.data.chelsea())) == []


def test_large_image_is_scaled_down_and_mapped_back(
    client: TestClient, apikey: str, astronaut: Image.Image
) -> None:
    # 4x the astronaut (2048 px) is detected on a 1280 px copy; the box comes back at 4x
    # (within 5 px of the original scale, as MTCNN sees another pyramid).
    big = astronaut.resize((2048, 2048), Image.Resampling.BICUBIC)
    found = faces(client, apikey, encode(big, quality=92))
    assert len(found) == 1
    assert_box_near(found[0]["box"], tuple(4 * v for v in ASTRONAUT_BOX), 20)


def test_two_faces_most_confident_first(
    client: TestClient, apikey: str, astronaut: Image.Image, grace_hopper: Image.Image
) -> None:
    canvas = Image.new("RGB", (512 + grace_hopper.width, 600), (128, 128, 128))
    canvas.paste(astronaut, (0, 0))
    canvas.paste(grace_hopper, (512, 0))
    found = faces(client, apikey, encode(canvas, quality=95))
    assert len(found) == 2
    assert found[0]["confidence"] >= found[1]["confidence"]
    lefts = sorted(f["box"]["left"] for f in found)
    assert abs(lefts[0] - ASTRONAUT_BOX[0]) <= 3
    assert abs(lefts[1] - (512 + GRACE_HOPPER_BOX[0])) <= 5


def test_batch_equals_single_calls(detector: MtcnnFaceDetector, astronaut: Image.Image) -> None:
    images = [
        astronaut,
        astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        astronaut.rotate(8),
        astronaut.crop((100, 0, 612, 512)),
    ]
    items = []
    for image in images:
        data = encode(image, "PNG")
        items.append(detector.preprocess(decode_image(data, inspect_image(data, 10**8))))
    batched = detector.predict(items)
    for item, in_batch in zip(items, batched, strict=True):
        (single,) = detector.predict([item])
        assert len(single) == len(in_batch)
        for a, b in zip(single, in_batch, strict=True):
            assert np.allclose(a.box, b.box, atol=1e-3)
            assert abs(a.probability - b.probability) < 1e-4
