"""Clear answers to a client's common mistakes."""

from __future__ import annotations

from fastapi.testclient import TestClient
from PIL import Image

from server.store.keys import KeyStore
from tests.conftest import encode


def test_image_under_another_field_name_names_the_missing_file(
    client: TestClient, apikey: str, astronaut: Image.Image
) -> None:
    jpeg = encode(astronaut)  # larger than a text field may be
    response = client.post(
        "/api/v2/", data={"apikey": apikey, "type": "detect_faces"},
        files={"image": ("photo.jpg", jpeg, "image/jpeg")},
    )
    assert response.json()["status_message"] == "Invalid parameter: file (missing)"


def test_gallery_tells_an_ordinary_key_it_is_not_admin(client: TestClient, keys: KeyStore) -> None:
    ordinary = keys.create("ordinary")
    body = client.get("/api/v2/gallery/", params={"apikey": ordinary}).json()
    assert (body["status"], body["status_message"]) == (
        401, "APIkey not allowed: the gallery needs an admin key"
    )
    unknown = client.get("/api/v2/gallery/", params={"apikey": "ir_nope"}).json()
    assert unknown["status_message"] == "APIkey invalid"


def test_gallery_without_trailing_slash(client: TestClient, keys: KeyStore) -> None:
    admin = keys.create("ops", is_admin=True)
    response = client.get("/api/v2/gallery", params={"apikey": admin})
    assert response.status_code == 200 and response.json()["data"] == {"people": []}
    enrol = client.post("/api/v2/gallery", data={"apikey": admin, "name": "x"})
    assert enrol.json()["status_message"] == "Invalid parameter: file (missing)"
