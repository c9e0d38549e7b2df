"""Failures stay inside their request: 500 without exception text, 503 for a model that
cannot load, and no charge for either."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from models.detect_faces.mtcnn import MtcnnFaceDetector
from server.store.keys import KeyStore
from tests.conftest import encode

URL = "/api/v2/"


@pytest.mark.slow
def test_internal_error_is_500_without_details(
    client: TestClient,
    keys: KeyStore,
    astronaut: Image.Image,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = keys.create("five", quota=5)

    def broken(*_args, **_kwargs):
        raise RuntimeError("secret-internal-detail /etc/passwd")

    monkeypatch.setattr(MtcnnFaceDetector, "postprocess", broken)
    with caplog.at_level(logging.ERROR):
        response = client.post(
            URL, data={"apikey": key, "type": "detect_faces"}, files={"file": encode(astronaut)}
        )
    assert response.status_code == 500
    assert response.json() == {"status": 500, "status_message": "Internal error", "data": None}
    assert "secret" not in response.text and "Traceback" not in response.text
    request_id = response.headers["x-request-id"]
    assert any(request_id in r.getMessage() for r in caplog.records)
    assert "secret-internal-detail" in caplog.text  # the log has what the client must not see
    assert keys.find("five").quota == 5


def test_model_that_fails_to_load_is_503_and_the_server_keeps_working(
    client: TestClient,
    keys: KeyStore,
    astronaut: Image.Image,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = keys.create("three", quota=3)

    def cannot_load(_self):
        raise OSError("weights missing")

    monkeypatch.setattr(MtcnnFaceDetector, "load", cannot_load)
    response = client.post(
        URL, data={"apikey": key, "type": "detect_faces"}, files={"file": encode(astronaut)}
    )
    body = response.json()
    assert response.status_code == 503 and body["status"] == 503
    assert body["status_message"] == "Service unavailable: model for detect_faces failed to load"
    assert "weights missing" not in response.text
    assert keys.find("three").quota == 3
    health = client.get("/health").json()
    assert health["models"]["detect_faces"]["error"] == "OSError"
    # Every other type keeps working.
    other = client.post(
        URL,
        data={"apikey": key, "type": "nsfw", "nsfw_min_confidence": "0"},
        files={"file": encode(astronaut)},
    )
    assert other.status_code == 200 and other.json()["data"]["quota"] == 2
    cached = client.get(URL, params={"apikey": key, "type": "cache"})
    assert cached.status_code == 200
