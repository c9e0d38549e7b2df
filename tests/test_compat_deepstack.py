"""/v1/vision/*, the DeepStack / CodeProject.AI API, called and read the way its clients do:
Frigate's deepstack detector, Double Take, the Home Assistant integrations (docs/compat.md).

Each client helper below does what that client's source does with a request and its answer,
and nothing more, so that a test fails where the client would."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from scripts.rendered_text import render_pages
from server.errors import ApiError, ErrorKind, ModelUnavailableError
from server.http.app import create_app
from server.http.deepstack import shapes
from server.store.keys import KeyStore
from tests.conftest import encode, key_store, make_settings

DETECTION = "/v1/vision/detection"
FACE = "/v1/vision/face"
RECOGNIZE = "/v1/vision/face/recognize"
REGISTER = "/v1/vision/face/register"
ANONYMOUS = "cameras"  # the key calls without api_key are charged to
ANONYMOUS_QUOTA = 1000

# Frigate's labelmap.txt: its COCO-91 names by index, which its detector looks labels up in.
_FRIGATE_NAMES = (
    "person|bicycle|car|motorcycle|airplane|bus|train|boat|traffic light|"
    "fire hydrant|street sign|stop sign|parking meter|bench|bird|cat|dog|horse|sheep|"
    "cow|elephant|bear|zebra|giraffe|hat|backpack|umbrella|shoe|eye glasses|handbag|"
    "tie|suitcase|frisbee|skis|snowboard|sports ball|kite|baseball bat|"
    "baseball glove|skateboard|surfboard|tennis racket|bottle|plate|wine glass|cup|"
    "fork|knife|spoon|bowl|banana|apple|sandwich|orange|broccoli|carrot|hot dog|"
    "pizza|donut|cake|chair|couch|potted plant|bed|mirror|dining table|window|desk|"
    "toilet|door|tv|laptop|mouse|remote|keyboard|cell phone|microwave|oven|toaster|"
    "sink|refrigerator|blender|book|clock|vase|scissors|teddy bear|hair drier|"
    "toothbrush|hair brush"
)
FRIGATE_LABELMAP = dict(enumerate(_FRIGATE_NAMES.split("|")))


def frigate_detect(client: TestClient, jpeg: bytes, api_key: str = "") -> np.ndarray:
    """Frigate's DeepStack detector on one frame: posts `api_key` (empty when not configured)
    and the JPEG as `image`, no min_confidence; reads only `predictions` (whatever the status),
    stops at the first under 0.4 or with a label not in its map (truck counts as car), and
    divides the corners by the posted size into a fixed table of 20 rows."""
    width, height = Image.open(io.BytesIO(jpeg)).size
    response = client.post(DETECTION, data={"api_key": api_key}, files={"image": jpeg})
    answer = response.json()
    detections = np.zeros((20, 6), np.float32)
    if answer.get("predictions") is None:
        return detections
    for i, detection in enumerate(answer["predictions"]):
        if detection["confidence"] < 0.4:
            break
        label = detection["label"].lower()
        label = "car" if label == "truck" else label
        index = next((k for k, v in FRIGATE_LABELMAP.items() if v == label), -1)
        if index < 0:
            break
        detections[i] = [  # a 21st row raises IndexError, as in Frigate
            index,
            float(detection["confidence"]),
            detection["y_min"] / height,
            detection["x_min"] / width,
            detection["y_max"] / height,
            detection["x_max"] / width,
        ]
    return detections


def home_assistant_call(client: TestClient, url: str, image: bytes, **fields: str) -> dict:
    """The Home Assistant integrations (deepstack-python): any status but 200 is an error,
    and a missing `predictions` raises."""
    response = client.post(url, data=fields, files={"image": image})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert isinstance(answer["predictions"], list)
    return answer


def double_take_recognize(client: TestClient, image: bytes) -> list[dict]:
    """Double Take's DeepStack recognize: `image` only, any status accepted, `success` false
    means no faces; a match is a userid other than "unknown" with confidence x 100 >= 60 and
    a box of at least 10,000 px. Returns its matches (lower-cased names) and misses."""
    answer = client.post(RECOGNIZE, files={"image": image}).json()
    if not answer.get("success"):
        return []
    faces = []
    for face in answer["predictions"]:
        confidence = face["confidence"] * 100
        area = (face["x_max"] - face["x_min"]) * (face["y_max"] - face["y_min"])
        name = face["userid"].lower()
        match = name != "unknown" and confidence >= 60 and area >= 10_000
        faces.append({"name": name, "confidence": confidence, "match": match})
    return faces


def double_take_train(client: TestClient, name: str, image: bytes) -> dict:
    """Double Take trains DeepStack with one image per call."""
    return client.post(REGISTER, data={"userid": name}, files={"image": image}).json()


def assert_deepstack_error(response, status: int) -> dict:
    """DeepStack's error envelope, with a Content-Length (Blue Iris fails on chunked)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and isinstance(body["error"], str) and body["duration"] == 0
    assert set(body) == {"success", "error", "duration"}
    assert "Traceback" not in body["error"]
    assert int(response.headers["content-length"]) == len(response.content)
    assert "transfer-encoding" not in response.headers
    return body


# Fast: answered before any model loads.


@pytest.fixture
def bare_client(tmp_path: Path) -> Iterator[tuple[TestClient, KeyStore]]:
    """A server without an anonymous key, with a 100 kB upload limit."""
    settings = make_settings(tmp_path / "data", max_upload_bytes=100_000)
    keys = key_store(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, keys


def test_errors_answer_in_deepstack_envelope(bare_client) -> None:
    client, keys = bare_client
    key = keys.create("client", quota=5)
    image = encode(Image.new("RGB", (32, 32), (90, 120, 150)))

    # No api_key and no anonymous key configured; then a wrong key.
    assert_deepstack_error(
        client.post(DETECTION, data={"api_key": ""}, files={"image": image}), 401
    )
    assert_deepstack_error(client.post(FACE, files={"image": image}), 401)
    wrong = client.post(DETECTION, data={"api_key": "ir_not_a_key"}, files={"image": image})
    assert assert_deepstack_error(wrong, 401)["error"] == "Incorrect api key"

    # min_confidence must be a number from 0 to 1.
    for value in ("2", "-0.1", "1.5", "nan", "inf", "abc", "0,5", "\u0660.\u0665"):
        bad = client.post(
            DETECTION, data={"api_key": key, "min_confidence": value}, files={"image": image}
        )
        assert "min_confidence" in assert_deepstack_error(bad, 400)["error"], value
    # No image at all; an image over the upload limit.
    assert_deepstack_error(client.post(DETECTION, data={"api_key": key}), 400)
    too_large = client.post(DETECTION, data={"api_key": key}, files={"image": b"\xff" * 200_000})
    assert_deepstack_error(too_large, 413)
    # Unknown paths and methods under /v1/.
    assert_deepstack_error(client.post("/v1/vision/captions", data={"api_key": key}), 404)
    assert_deepstack_error(client.get(DETECTION), 405)
    assert keys.find("client").quota == 5  # nothing was charged

    # Frigate against this server: it reads no predictions from the 401 and detects nothing.
    assert not frigate_detect(client, image).any()


def test_gallery_writes_need_an_admin_key_unless_allowed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", deepstack_anonymous_key=ANONYMOUS)
    keys = key_store(settings)
    keys.create(ANONYMOUS)
    user = keys.create("user")
    image = encode(Image.new("RGB", (32, 32)))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for fields in ({"userid": "someone"}, {"userid": "someone", "api_key": user}):
            registered = client.post(REGISTER, data=fields, files={"image": image})
            assert "admin" in assert_deepstack_error(registered, 401)["error"]
            listed = client.post("/v1/vision/face/list", data=fields)
            assert_deepstack_error(listed, 401)
            deleted = client.post("/v1/vision/face/delete", data=fields)
            assert_deepstack_error(deleted, 401)
        # custom/list needs no key: Blue Iris asks before it is configured.
        listed = client.post("/v1/vision/custom/list")
        assert listed.status_code == 200 and listed.json()["success"] is True
        assert listed.json()["models"] == [
            client.app.state.imagerecognize.service.pipeline.model_class("objects").name
        ]


def test_every_error_has_a_deepstack_status() -> None:
    assert set(shapes.STATUS) == set(ErrorKind)
    overloaded = shapes.error_response(ModelUnavailableError("server overloaded", retry_after=1))
    assert overloaded.status_code == 503 and overloaded.headers["retry-after"] == "1"
    assert shapes.error_response(ApiError(ErrorKind.INVALID_FORMAT)).status_code == 400
    assert shapes.parse_min_confidence(None, 0.4) == 0.4
    assert shapes.parse_min_confidence(" .45 ", 0.4) == 0.45
    assert shapes.parse_min_confidence("1", 0.4) == 1.0


# Slow: real models on real images, one server for the module.


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[TestClient, KeyStore]]:
    """A server whose calls without api_key are charged to the key `cameras`, and may
    change the gallery."""
    settings = make_settings(
        tmp_path_factory.mktemp("deepstack") / "data",
        deepstack_anonymous_key=ANONYMOUS,
        deepstack_anonymous_gallery=True,
    )
    keys = key_store(settings)
    keys.create(ANONYMOUS, quota=ANONYMOUS_QUOTA)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, keys


def astronaut_and_cat(astronaut: Image.Image) -> Image.Image:
    import skimage.data

    canvas = Image.new("RGB", (1024, 512), (128, 128, 128))
    canvas.paste(astronaut, (0, 0))
    canvas.paste(Image.fromarray(skimage.data.chelsea()).resize((512, 340)), (512, 80))
    return canvas


@pytest.mark.slow
def test_frigate_detector(served, astronaut: Image.Image) -> None:
    client, keys = served
    before = keys.find(ANONYMOUS).quota
    frame = encode(astronaut_and_cat(astronaut).resize((320, 320)))  # Frigate's model input
    rows = frigate_detect(client, frame)
    found = {FRIGATE_LABELMAP[int(label)]: row for label, *row in rows if row[0] > 0}
    assert {"person", "cat"} <= set(found), rows
    # Boxes divided by the posted size: the astronaut on the left half, the cat on the right.
    _, y_min, x_min, y_max, x_max = found["person"]
    assert 0 <= x_min < x_max <= 0.55 and 0 <= y_min < y_max <= 1
    _, y_min, x_min, y_max, x_max = found["cat"]
    assert 0.45 <= x_min < x_max <= 1 and 0 <= y_min < y_max <= 1
    assert keys.find(ANONYMOUS).quota == before - 1  # one unit, charged to the anonymous key

    # What Frigate relies on without saying: integer pixels of the posted image, lower-case
    # labels, most confident first, none under the default 0.4.
    answer = client.post(DETECTION, data={"api_key": ""}, files={"image": frame}).json()
    assert answer["success"] is True and answer["count"] == len(answer["predictions"])
    confidences = [p["confidence"] for p in answer["predictions"]]
    assert confidences == sorted(confidences, reverse=True) and min(confidences) >= 0.4
    for p in answer["predictions"]:
        assert p["label"] == p["label"].lower()
        assert all(isinstance(p[k], int) for k in ("x_min", "y_min", "x_max", "y_max"))
        assert 0 <= p["x_min"] < p["x_max"] <= 320 and 0 <= p["y_min"] < p["y_max"] <= 320
    assert answer["duration"] == 0 and answer["message"].startswith("Found ")
    assert isinstance(answer["inferenceMs"], int) and isinstance(answer["processMs"], int)


@pytest.mark.slow
def test_home_assistant_integrations(served, astronaut: Image.Image, coffee: Image.Image) -> None:
    client, keys = served
    scene = encode(astronaut_and_cat(astronaut))
    user = keys.create("home-assistant", quota=10)
    # Object integration: min_confidence=0.1 and its own key; custom models the same way.
    low = home_assistant_call(client, DETECTION, scene, api_key=user, min_confidence="0.1")
    default = home_assistant_call(client, DETECTION, scene, api_key=user)
    assert all(p["confidence"] >= 0.1 for p in low["predictions"])
    assert len(low["predictions"]) >= len(default["predictions"]) >= 2
    model = client.post("/v1/vision/custom/list").json()["models"][0]
    custom = home_assistant_call(
        client, f"/v1/vision/custom/{model}", scene, api_key=user, min_confidence="0.1"
    )
    assert custom["predictions"] == low["predictions"]
    assert keys.find("home-assistant").quota == 10 - 3

    # Face integration: /v1/vision/face without the slash, min_confidence=0.45.
    faces = home_assistant_call(client, FACE, encode(astronaut), api_key=user,
                                min_confidence="0.45")["predictions"]  # fmt: skip
    assert len(faces) == 1 and "label" not in faces[0] and faces[0]["confidence"] >= 0.45
    assert 150 <= faces[0]["x_min"] < faces[0]["x_max"] <= 300  # the astronaut's face
    with_slash = client.post(FACE + "/", data={"api_key": user}, files={"image": encode(astronaut)})
    assert with_slash.json()["predictions"] == faces
    # No face: success and an empty list (CodeProject.AI's success false breaks it).
    none = home_assistant_call(client, FACE, encode(coffee), api_key=user, min_confidence="0.45")
    assert none["success"] is True and none["predictions"] == []


@pytest.mark.slow
def test_double_take(
    served, astronaut: Image.Image, grace_hopper: Image.Image, coffee: Image.Image
) -> None:
    client, keys = served
    admin = keys.create("double-take-admin", is_admin=True)
    large = astronaut.resize((768, 768))  # a face above Double Take's 10,000 px minimum
    # Trained one image per call: every image is kept, where DeepStack kept only the last.
    for photo in (astronaut, astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)):
        assert double_take_train(client, "Eileen Collins", encode(photo)) == {
            "success": True,
            "message": "face added",
            "duration": 0,
        }
    people = client.get("/api/v2/gallery/", params={"apikey": admin}).json()["data"]["people"]
    assert [(p["name"], len(p["faces"])) for p in people] == [("Eileen Collins", 2)]
    listed = client.post("/v1/vision/face/list").json()
    assert listed["success"] is True and listed["faces"] == ["Eileen Collins"]
    no_face = double_take_train(client, "Eileen Collins", encode(coffee))
    assert no_face["success"] is False and "no face" in no_face["error"]

    (match,) = double_take_recognize(client, encode(large, quality=90))
    assert match["match"] and match["name"] == "eileen collins", match
    (stranger,) = double_take_recognize(client, encode(grace_hopper))
    assert stranger["name"] == "unknown" and not stranger["match"]
    assert double_take_recognize(client, encode(coffee)) == []  # no faces, not an error

    similar = client.post(
        "/v1/vision/face/match",
        files={"image1": encode(astronaut), "image2": encode(large)},
    ).json()
    different = client.post(
        "/v1/vision/face/match",
        files={"image1": encode(astronaut), "image2": encode(grace_hopper)},
    ).json()
    assert similar["success"] and different["success"]
    assert similar["similarity"] > 0.5 > different["similarity"]

    removed = client.post("/v1/vision/face/delete", data={"userid": "Eileen Collins"})
    assert removed.json() == {"success": True, "duration": 0}
    (gone,) = double_take_recognize(client, encode(large))
    assert gone["name"] == "unknown"
    assert client.post("/v1/vision/face/list").json()["faces"] == []


@pytest.mark.slow
def test_scene_ocr_bad_images_and_quota(served, coffee: Image.Image) -> None:
    client, keys = served
    key = keys.create("one-unit", quota=1)
    scene = client.post("/v1/vision/scene", data={"api_key": key}, files={"image": encode(coffee)})
    assert scene.json()["success"] is True and scene.json()["label"] == "espresso"
    assert 0 < scene.json()["confidence"] <= 1
    # Quota: one unit per analysis, 402 when none is left.
    spent = client.post(DETECTION, data={"api_key": key}, files={"image": encode(coffee)})
    assert_deepstack_error(spent, 402)

    page = render_pages()[0]
    for url in ("/v1/vision/ocr", "/v1/image/ocr"):
        read = client.post(url, files={"upload": page.image}).json()  # the first file counts
        assert read["success"] is True
        assert [line["label"] for line in read["predictions"]] == list(page.lines)
        assert all(0.5 <= line["confidence"] <= 1 for line in read["predictions"])

    before = keys.find(ANONYMOUS).quota
    for broken in (b"hello", encode(coffee)[:2000], b""):
        assert_deepstack_error(client.post(DETECTION, files={"image": broken}), 400)
    assert keys.find(ANONYMOUS).quota == before  # refused images are not charged
