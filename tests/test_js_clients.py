"""The official JavaScript clients, `@aws-sdk/client-rekognition` and `@google-cloud/vision`
(REST and plaintext gRPC), pointed at a live server as docs/compat.md says, on real models and
photos; their answers checked against what the Python clients' tests and /api/v2/ see.
Node.js and npm come from the machine (.ci/run installs them when missing); the packages
from tests/js/package-lock.json, installed on first use into tests/js/node_modules."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from PIL import Image

from server.http.app import create_app
from tests.conftest import encode, free_port, key_store, make_settings
from tests.test_compat_rekognition import ThreadedServer, credentials_for

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent / "js"


def _npm_installed() -> Path:
    """tests/js/node_modules as package-lock.json pins it (npm ci), made again when the lock
    file is newer than the install."""
    node_modules = PROJECT / "node_modules"
    lock = PROJECT / "package-lock.json"
    stamp = node_modules / ".package-lock.json"
    if not stamp.is_file() or stamp.stat().st_mtime < lock.stat().st_mtime:
        installed = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=PROJECT, timeout=600, capture_output=True, text=True,
        )  # fmt: skip
        assert installed.returncode == 0, f"npm ci failed: {installed.stderr}"
    return node_modules


@dataclass
class JsRun:
    """What the clients answered (clients.mjs), and the server and key to compare with."""

    answers: dict
    server: ThreadedServer
    key: str
    images: dict[str, Path]

    def v2_face(self, name: str) -> dict:
        """The one face /api/v2/ finds in image ``name``."""
        response = requests.post(
            f"{self.server.url}/api/v2/",
            data={"apikey": self.key, "type": "detect_faces"},
            files={"file": self.images[name].read_bytes()},
            timeout=300,
        )
        assert response.status_code == 200, response.text
        (face,) = response.json()["data"]["objects"]
        return face


@pytest.fixture(scope="module")
def js(
    tmp_path_factory: pytest.TempPathFactory, astronaut: Image.Image, coffee: Image.Image
) -> Iterator[JsRun]:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("needs Node.js and npm")
    _npm_installed()
    folder = tmp_path_factory.mktemp("js")
    images = {}
    for name, data in (
        ("astronaut", encode(astronaut, "JPEG", quality=95)),
        ("coffee", encode(coffee, "JPEG", quality=95)),
        ("notImage", b"this is not an image"),
    ):
        images[name] = folder / name
        images[name].write_bytes(data)
    grpc_port = free_port()
    settings = make_settings(folder / "data", google_grpc_port=grpc_port)
    keys = key_store(settings)
    issued = credentials_for(settings, keys, "ops", is_admin=True)
    google_key = keys.create("vision")
    server = ThreadedServer(create_app(settings))
    try:
        run = subprocess.run(
            ["node", "clients.mjs", json.dumps({
                "url": server.url, "port": server.port, "grpcPort": grpc_port,
                "aws": {
                    "accessKeyId": issued.access_key_id,
                    "secretAccessKey": issued.secret_access_key,
                },
                "googleKey": google_key,
                "images": {name: str(path) for name, path in images.items()},
            })],
            cwd=PROJECT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        yield JsRun(json.loads(run.stdout), server, google_key, images)
    finally:
        server.stop()


def test_rekognition_js_client(js: JsRun, astronaut: Image.Image) -> None:
    aws = js.answers["rekognition"]
    v2_face = js.v2_face("astronaut")
    (face,) = aws["detectFaces"]["FaceDetails"]
    width, height = astronaut.size
    box = face["BoundingBox"]
    assert box["Left"] * width == pytest.approx(v2_face["box"]["left"], abs=0.5)
    assert box["Top"] * height == pytest.approx(v2_face["box"]["top"], abs=0.5)
    assert box["Width"] * width == pytest.approx(v2_face["box"]["width"], abs=0.5)
    assert [point["Type"] for point in face["Landmarks"]] == [
        "eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight",
    ]
    assert face["Confidence"] > 99

    labels = {label["Name"]: label for label in aws["detectLabels"]["Labels"]}
    assert {"Cup", "Espresso", "Container", "Beverage"} <= set(labels)
    assert labels["Cup"]["Instances"] and {"Name": "Container"} in labels["Cup"]["Parents"]
    assert all(label["Confidence"] >= 50 for label in labels.values())

    # A collection round trip, and the client's typed errors.
    assert aws["createCollection"]["StatusCode"] == 200
    assert aws["createAgain"] == {
        "error": "ResourceAlreadyExistsException", "code": None, "status": 400,
    }
    (record,) = aws["indexFaces"]["FaceRecords"]
    face_id = record["Face"]["FaceId"]
    assert record["Face"]["ExternalImageId"] == "astronaut.jpg"
    (match,) = aws["searchFacesByImage"]["FaceMatches"]
    assert match["Face"]["FaceId"] == face_id and match["Similarity"] > 99
    assert [listed["FaceId"] for listed in aws["listFaces"]["Faces"]] == [face_id]
    (same,) = aws["compareFaces"]["FaceMatches"]
    assert same["Similarity"] > 99 and aws["compareFaces"]["UnmatchedFaces"] == []
    assert aws["notAnImage"]["error"] == "InvalidImageFormatException"
    assert aws["notAnImage"]["status"] == 400
    assert aws["wrongSecret"]["error"] == "InvalidSignatureException"


def test_vision_js_client_over_rest_and_grpc(js: JsRun) -> None:
    google = js.answers["vision"]
    v2_face = js.v2_face("astronaut")
    left, top = v2_face["box"]["left"], v2_face["box"]["top"]
    right, bottom = left + v2_face["box"]["width"], top + v2_face["box"]["height"]
    expected = [
        {"x": x, "y": y} for x, y in ((left, top), (right, top), (right, bottom), (left, bottom))
    ]
    for answer in (google["faceDetection"], google["grpcBatch"]["responses"][0]):
        (face,) = answer["faceAnnotations"]
        assert face["boundingPoly"]["vertices"] == expected
        assert [point["type"] for point in face["landmarks"]] == [
            "LEFT_EYE", "RIGHT_EYE", "NOSE_TIP", "MOUTH_LEFT", "MOUTH_RIGHT",
        ]
        assert face["detectionConfidence"] > 0.99
        assert face["joyLikelihood"] == "UNKNOWN"  # never invented
    labels = [label["description"] for label in google["labelDetection"]["labelAnnotations"]]
    assert labels[:2] == ["cup", "espresso"]
    # The REST fallback raises a plain Error with the HTTP status as its code.
    assert google["wrongKey"]["code"] == 403

