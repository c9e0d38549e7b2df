"""Cross-origin access and the negotiated content type of the API's answers (HTTP level;
the browser tests in test_browser.py check the same in Chromium)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.http.app import create_app
from server.http.content_type import api_media_type, asks_for_json
from tests.conftest import key_store, make_settings

SITE = "https://shop.example"


def test_preflight_is_answered_for_any_origin(client: TestClient) -> None:
    response = client.options(
        "/api/v2/",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-requested-with",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in response.headers


def test_cross_origin_answer_is_readable_and_text(client: TestClient, apikey: str) -> None:
    response = client.post("/api/v2/", data={"apikey": apikey, "type": "nonsense"},
                           headers={"Origin": SITE})
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "Retry-After" in response.headers["access-control-expose-headers"]
    # The body is the same JSON envelope whatever its declared type.
    assert json.loads(response.text) == response.json()
    assert response.json()["status"] == 420


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, "text/plain; charset=utf-8"),
        ("*/*", "text/plain; charset=utf-8"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "text/plain; charset=utf-8"),
        ("application/json", "application/json"),
        ("application/json, text/javascript, */*; q=0.01", "application/json"),
        ("application/problem+json", "application/json"),
        ("application/json;q=0", "text/plain; charset=utf-8"),
    ],
)
def test_media_type_follows_accept(accept: str | None, media_type: str) -> None:
    assert api_media_type(accept) == media_type
    assert asks_for_json(accept) == (media_type == "application/json")


def test_accept_json_gets_json(client: TestClient, apikey: str) -> None:
    response = client.post(
        "/api/v2/", data={"apikey": apikey, "type": "nonsense"},
        headers={"Accept": "application/json"},
    )
    assert response.headers["content-type"] == "application/json"
    assert response.json()["status"] == 420
    # Other routes keep their own types.
    assert client.get("/health").headers["content-type"] == "application/json"


@pytest.fixture
def restricted_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path / "data", cors_allow_origins=[SITE])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_listed_origins_only(restricted_client: TestClient, tmp_path: Path) -> None:
    key = key_store(make_settings(tmp_path / "data")).create("tester", quota=5)
    form = {"apikey": key, "type": "nonsense"}
    allowed = restricted_client.post("/api/v2/", data=form, headers={"Origin": SITE})
    assert allowed.headers["access-control-allow-origin"] == SITE
    assert allowed.json()["status"] == 420
    # Another site's page is refused before any work, so it costs no quota either.
    other = restricted_client.post("/api/v2/", data=form, headers={"Origin": "https://evil.example"})
    assert other.status_code == 403
    assert other.json()["status_message"] == "Forbidden: origin https://evil.example is not allowed"
    assert "access-control-allow-origin" not in other.headers
    preflight = restricted_client.options(
        "/api/v2/",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400
    # The server's own page posts with its own origin.
    own = restricted_client.post("/api/v2/", data=form, headers={"Origin": "http://testserver"})
    assert own.json()["status"] == 420
    # Requests without an Origin (curl, servers) are not browsers' and always pass.
    assert restricted_client.post("/api/v2/", data=form).json()["status"] == 420


def test_cors_off(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", cors_allow_origins=[])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.post("/api/v2/", data={"apikey": "x"}, headers={"Origin": SITE})
        assert response.status_code == 403
        assert "access-control-allow-origin" not in response.headers
