"""Every status code of docs/api.md, and the order in which the checks apply."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from server.http.app import create_app
from server.store.keys import KeyStore
from tests.conftest import app_state, encode, make_settings, post_api

URL = "/api/v2/"


def call(client: TestClient, data: dict | None = None, file: bytes | None = None, url: str = URL):
    body = post_api(client, data, file, url)
    assert set(body) == {"status", "status_message", "data"}
    return body


@pytest.fixture
def small_jpeg(astronaut: Image.Image) -> bytes:
    return encode(astronaut.resize((128, 128)))


def test_no_trailing_slash_is_300(client: TestClient, apikey: str, small_jpeg: bytes) -> None:
    body = call(client, {"apikey": apikey, "type": "detect_faces"}, small_jpeg, url="/api/v2")
    assert body == {
        "status": 300,
        "status_message": "Invalid request, no data received",
        "data": None,
    }
    assert client.get("/api/v2").status_code == 300


def test_no_fields_is_300(client: TestClient) -> None:
    assert call(client)["status"] == 300
    assert client.get(URL).json()["status"] == 300


def test_missing_apikey_is_400(client: TestClient, small_jpeg: bytes) -> None:
    body = call(client, {"type": "nonsense"}, small_jpeg)
    assert (body["status"], body["status_message"]) == (400, "APIkey missing")
    assert call(client, {"apikey": "", "type": "detect_faces"})["status"] == 400


def test_unknown_or_revoked_key_is_401(client: TestClient, keys: KeyStore) -> None:
    body = call(client, {"apikey": "ir_unknown", "type": "nonsense"})
    assert (body["status"], body["status_message"]) == (401, "APIkey invalid")
    key = keys.create("soon-revoked")
    assert call(client, {"apikey": key, "type": "nonsense"})["status"] == 420
    keys.revoke("soon-revoked")
    assert call(client, {"apikey": key, "type": "nonsense"})["status"] == 401


def test_invalid_type_is_420_before_421(client: TestClient, apikey: str) -> None:
    for data in (
        {"apikey": apikey},
        {"apikey": apikey, "type": "faces"},
        {"apikey": apikey, "type": "OBJECTS", "max_labels": "x"},
    ):
        body = call(client, data)
        assert (body["status"], body["status_message"]) == (420, "Invalid type")


def test_get_only_for_cache(client: TestClient, apikey: str) -> None:
    response = client.get(URL, params={"apikey": apikey, "type": "detect_faces"})
    assert response.status_code == 420 and response.json()["status"] == 420
    response = client.get(URL, params={"apikey": apikey, "type": "cache"})
    assert response.status_code == 200 and response.json()["data"]["objects"] == []


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({}, ["file", "max_labels", "min_confidence"]),
        ({"max_labels": "10"}, ["min_confidence"]),
        ({"max_labels": "0", "min_confidence": "80"}, ["max_labels"]),
        ({"max_labels": "ten", "min_confidence": "80"}, ["max_labels"]),
        ({"max_labels": "10", "min_confidence": "80.5"}, ["min_confidence"]),
        ({"max_labels": "10", "min_confidence": "101"}, ["min_confidence"]),
        ({"max_labels": "10", "min_confidence": "-1"}, ["min_confidence"]),
    ],
)
def test_objects_parameters_are_421(
    client: TestClient, apikey: str, small_jpeg: bytes, fields: dict, named: list[str]
) -> None:
    file = None if "file" in named else small_jpeg
    body = call(client, {"apikey": apikey, "type": "objects", **fields}, file)
    assert body["status"] == 421
    assert body["status_message"].startswith("Invalid parameter: ")
    for name in named:
        assert name in body["status_message"]
    for name in {"file", "max_labels", "min_confidence"} - set(named):
        assert name not in body["status_message"]


def test_nsfw_parameter_and_missing_file_are_421(client: TestClient, apikey: str) -> None:
    body = call(client, {"apikey": apikey, "type": "nsfw", "nsfw_min_confidence": "200"})
    assert body["status"] == 421
    assert "nsfw_min_confidence" in body["status_message"] and "file" in body["status_message"]
    body = call(client, {"apikey": apikey, "type": "detect_faces"})
    assert (body["status"], body["status_message"]) == (421, "Invalid parameter: file (missing)")


def test_quota_402_after_421_and_before_file_checks(
    client: TestClient, keys: KeyStore, small_jpeg: bytes
) -> None:
    empty = keys.create("empty", quota=0)
    assert call(client, {"apikey": empty, "type": "objects"})["status"] == 421
    body = call(client, {"apikey": empty, "type": "detect_faces"}, b"GIF89a not an image")
    assert (body["status"], body["status_message"]) == (402, "Quota limit reached")
    assert call(client, {"apikey": empty, "type": "detect_faces"}, small_jpeg)["status"] == 402
    # type=cache is free, so an exhausted key may still read its results.
    assert call(client, {"apikey": empty, "type": "cache"})["status"] == 200


@pytest.fixture
def client_without_text(tmp_path) -> Iterator[TestClient]:
    """A server whose detect_text model is configured but not installed."""
    settings = make_settings(tmp_path / "data", text_model="not-installed")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_file_checks_413_415_412_then_503(
    client_without_text: TestClient, small_jpeg: bytes
) -> None:
    client = client_without_text
    apikey = KeyStore(app_state(client).keys.engine).create("tester")
    body = call(client, {"apikey": apikey, "type": "detect_faces"}, b"%PDF-1.4 not an image")
    assert (body["status"], body["status_message"]) == (415, "Invalid file format")
    half = small_jpeg[: len(small_jpeg) // 2]
    body = call(client, {"apikey": apikey, "type": "detect_faces"}, half)
    assert (body["status"], body["status_message"]) == (412, "Invalid file")
    assert call(client, {"apikey": apikey, "type": "detect_faces"}, b"")["status"] == 412
    # A type with no model on this server: the image checks come first, then 503.
    body = call(client, {"apikey": apikey, "type": "detect_text"}, small_jpeg[:300])
    assert body["status"] == 412
    body = call(client, {"apikey": apikey, "type": "detect_text"}, small_jpeg)
    assert body["status"] == 503 and body["status_message"].startswith("Service unavailable")
    assert "not-installed" in body["status_message"]


@pytest.mark.slow
def test_failed_requests_are_not_charged(
    client_without_text: TestClient, small_jpeg: bytes
) -> None:
    client = client_without_text
    keys = KeyStore(app_state(client).keys.engine)
    key = keys.create("two-left", quota=2)
    for bad in (b"GIF89a", small_jpeg[:200], b""):
        assert call(client, {"apikey": key, "type": "detect_faces"}, bad)["status"] in (412, 415)
    assert call(client, {"apikey": key, "type": "detect_text"}, small_jpeg)["status"] == 503
    first = call(client, {"apikey": key, "type": "detect_faces"}, small_jpeg)
    assert (first["status"], first["data"]["quota"]) == (200, 1)
    second = call(client, {"apikey": key, "type": "detect_faces"}, small_jpeg)
    assert (second["status"], second["data"]["quota"], second["data"]["cached"]) == (200, 0, True)
    assert call(client, {"apikey": key, "type": "detect_faces"}, small_jpeg)["status"] == 402


@pytest.mark.slow
def test_success_envelope_and_extensions(
    client: TestClient, apikey: str, astronaut: Image.Image
) -> None:
    image = encode(astronaut)
    # max_labels does not belong to detect_faces: ignored, even malformed.
    body = call(client, {"apikey": apikey, "type": "detect_faces", "max_labels": "x"}, image)
    assert (body["status"], body["status_message"]) == (200, "OK")
    data = body["data"]
    assert data["error"] == 0 and data["type"] == "detect_faces" and data["quota"] is None
    assert data["image"]["width"] == 512 and data["image"]["format"] == "jpeg"
    assert data["model"]["name"] == "mtcnn" and data["cached"] is False
    assert isinstance(data["elapsed_ms"], float) and len(data["id"]) == 32
    assert len(data["objects"]) == 1


def test_urlencoded_form_is_accepted(client: TestClient, apikey: str) -> None:
    response = client.post(
        URL,
        content=f"apikey={apikey}&type=cache&limit=5",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and response.json()["data"]["type"] == "cache"


@pytest.mark.slow
def test_png_and_filename_do_not_matter(client: TestClient, apikey: str, astronaut) -> None:
    png = encode(astronaut, "PNG")
    files = {"file": ("photo.gif", io.BytesIO(png), "image/gif")}
    response = client.post(URL, data={"apikey": apikey, "type": "detect_faces"}, files=files)
    assert response.status_code == 200
    assert response.json()["data"]["image"]["format"] == "png"


def test_other_paths_answer_in_the_envelope(client: TestClient) -> None:
    response = client.get("/api/v3/")
    assert response.status_code == 404 and response.json()["status"] == 404
    # Under /api/v1/ every path is CompreFace's, and answers in its body.
    response = client.get("/api/v1/")
    assert response.status_code == 404 and set(response.json()) == {"message", "code"}


def test_every_answer_names_its_request(client: TestClient, apikey: str) -> None:
    answers = [
        client.get(URL, params={"apikey": apikey, "type": "cache"}),  # 200
        client.post(URL),  # 300
        client.post(URL, data={"type": "cache"}),  # 400
        client.post("/api/v2", data={"apikey": apikey}),  # 300, no slash
        client.get("/api/v1/"),  # 404
        client.get("/api/v2/gallery/"),  # 400 from the gallery's routes
        client.get("/health"),
    ]
    ids = [answer.headers["x-request-id"] for answer in answers]
    assert all(len(i) == 16 for i in ids) and len(set(ids)) == len(ids)
