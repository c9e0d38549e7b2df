"""JPEG draft decoding: large JPEGs are decoded at a reduced DCT scale, and the boxes that
come back in full-size pixels stay within 2 % of those from a full decode, and nsfw scores
within half a point."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from PIL import Image

from models.detect_faces.mtcnn import MtcnnFaceDetector
from models.images import decode_image, inspect_image
from models.nsfw.open_nsfw import OpenNsfwClassifier
from models.objects.ssd_mobilenet import SsdMobileNetV2Detector
from tests.conftest import encode, model_options

pytestmark = pytest.mark.slow  # real models or live servers


def boxes(model, data: bytes, draft: bool, params: dict) -> list[dict]:
    info = inspect_image(data, 10**9)
    image = decode_image(data, info, model.input_max_side if draft else None)
    if draft:
        assert image.rgb.width < info.width  # really decoded smaller
    item = model.preprocess(image)
    (output,) = model.predict([item])
    return model.postprocess(output, item, image, params).objects


def within(a: dict, b: dict, width: int, height: int, share: float = 0.02) -> bool:
    return (
        abs(a["left"] - b["left"]) <= share * width
        and abs(a["top"] - b["top"]) <= share * height
        and abs(a["width"] - b["width"]) <= share * width
        and abs(a["height"] - b["height"]) <= share * height
    )


@pytest.fixture(scope="module")
def big_photo(astronaut: Image.Image, grace_hopper: Image.Image) -> tuple[bytes, int, int]:
    canvas = Image.new("RGB", (1024 + 768, 1024), (110, 110, 110))
    canvas.paste(astronaut.resize((1024, 1024), Image.Resampling.BICUBIC), (0, 0))
    canvas.paste(grace_hopper.resize((768, 1000), Image.Resampling.BICUBIC), (1024, 0))
    big = canvas.resize((canvas.width * 2, canvas.height * 2), Image.Resampling.BICUBIC)
    return encode(big, quality=90), big.width, big.height


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: MtcnnFaceDetector(torch.device("cpu"), model_options()),
        lambda tmp: SsdMobileNetV2Detector(torch.device("cpu"), model_options(tmp)),
    ],
)
def test_draft_boxes_match_full_decode(
    make: Callable, big_photo: tuple[bytes, int, int], tmp_path
) -> None:
    model = make(tmp_path)
    model.load()
    data, width, height = big_photo
    params = {"max_labels": 20, "min_confidence": 50}
    full = boxes(model, data, False, params)
    draft = boxes(model, data, True, params)
    if isinstance(model, MtcnnFaceDetector):
        pairs = list(zip(full, draft, strict=True))
        assert len(pairs) == 2
        for a, b in pairs:
            assert within(a["box"], b["box"], width, height), (a, b)
    else:
        full_labels = {label["name"]: label for label in full if label["instances"]}
        draft_labels = {label["name"]: label for label in draft if label["instances"]}
        assert "person" in full_labels and full_labels.keys() == draft_labels.keys()
        for name, label in full_labels.items():
            # Instances may swap places when their confidences are close: match by box.
            for instance in label["instances"]:
                others = draft_labels[name]["instances"]
                assert any(
                    within(instance["box"], other["box"], width, height) for other in others
                ), (name, instance, others)


def test_draft_nsfw_score_matches_full_decode(big_photo: tuple[bytes, int, int]) -> None:
    model = OpenNsfwClassifier(torch.device("cpu"), model_options())
    model.load()
    data, _, _ = big_photo
    params = {"nsfw_min_confidence": 0}
    full = {label["name"]: label["confidence"] for label in boxes(model, data, False, params)}
    draft = {label["name"]: label["confidence"] for label in boxes(model, data, True, params)}
    assert abs(full["nsfw"] - draft["nsfw"]) <= 0.5, (full, draft)
