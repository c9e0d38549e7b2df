"""Stored results: type=cache per key, identical analyses answered from the store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import update

from models.detect_faces.mtcnn import MtcnnFaceDetector
from server.store.db import StoredResult, utcnow
from server.store.keys import KeyStore
from tests.conftest import app_state, encode, post_api

pytestmark = pytest.mark.slow  # real models or live servers

URL = "/api/v2/"


def analyse(client: TestClient, key: str, data: bytes) -> dict:
    body = post_api(client, {"apikey": key, "type": "detect_faces"}, data)
    assert body["status"] == 200, body
    return body["data"]


def cache(client: TestClient, key: str, **fields: str) -> dict:
    response = client.get(URL, params={"apikey": key, "type": "cache", **fields})
    assert response.status_code == response.json()["status"]
    return response.json()


def test_cache_lists_this_keys_results_only(
    client: TestClient, keys: KeyStore, astronaut: Image.Image, coffee: Image.Image
) -> None:
    alice, bob = keys.create("alice", quota=5), keys.create("bob")
    first = analyse(client, alice, encode(astronaut))
    second = analyse(client, alice, encode(coffee))
    listed = cache(client, alice)["data"]
    assert listed["type"] == "cache" and listed["quota"] == 3  # reading the cache is free
    assert [e["id"] for e in listed["objects"]] == [second["id"], first["id"]]
    entry = listed["objects"][1]
    assert entry["type"] == "detect_faces" and entry["created"].endswith("Z")
    assert entry["image"] == first["image"] and entry["objects"] == first["objects"]
    assert entry["params"] == {} and entry["model"] == first["model"]

    assert cache(client, bob)["data"]["objects"] == []
    body = cache(client, bob, id=first["id"])
    assert body["status"] == 421 and "id" in body["status_message"]
    assert cache(client, alice, id=first["id"])["data"]["objects"][0]["id"] == first["id"]
    assert len(cache(client, alice, limit="1")["data"]["objects"]) == 1
    assert cache(client, alice, limit="0")["status"] == 421
    assert cache(client, alice, limit="101")["status"] == 421


def test_identical_analysis_is_answered_from_the_store(
    client: TestClient, keys: KeyStore, astronaut: Image.Image, monkeypatch
) -> None:
    key, other = keys.create("repeat", quota=3), keys.create("other")
    image = encode(astronaut)
    first = analyse(client, key, image)
    assert first["cached"] is False

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model must not run for a stored result")

    monkeypatch.setattr(MtcnnFaceDetector, "predict", no_model)
    again = analyse(client, key, image)
    assert again["cached"] is True and again["id"] == first["id"]
    assert again["objects"] == first["objects"] and again["quota"] == 1  # still charged
    monkeypatch.undo()
    # Another key never sees it; other bytes are another analysis.
    assert analyse(client, other, image)["cached"] is False
    assert analyse(client, key, encode(astronaut, quality=60))["cached"] is False


def test_expired_results_are_neither_listed_nor_reused(
    client: TestClient, keys: KeyStore, astronaut: Image.Image
) -> None:
    key = keys.create("old")
    image = encode(astronaut)
    first = analyse(client, key, image)
    with keys.engine.begin() as conn:
        conn.execute(update(StoredResult).values(created_at=utcnow() - timedelta(days=31)))
    assert cache(client, key)["data"]["objects"] == []
    assert analyse(client, key, image)["cached"] is False
    service = app_state(client)
    assert service.results.purge_expired() == 1
    assert cache(client, key, id=first["id"])["status"] == 421
