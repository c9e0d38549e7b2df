"""Inputs that once gave a 500, lost an answer or leaked something: each answers in the
envelope with the status the contract names, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from server.http.app import RedactApiKeys, create_app
from server.settings import Settings
from server.store.db import make_engine
from server.store.gallery import EnrolledFace, Gallery
from server.store.keys import KeyStore
from tests.conftest import encode, key_store, make_settings

URL = "/api/v2/"
GALLERY = "/api/v2/gallery/"
DESCRIPTOR = "dlib_face_recognition_resnet_model_v1"


def checked(response: Any) -> dict:
    body = response.json()
    assert response.status_code == body["status"], body
    assert set(body) == {"status", "status_message", "data"}
    return body


@pytest.fixture
def db_settings(database_url: str, tmp_path: Path) -> Settings:
    """On SQLite and on PostgreSQL (a fresh database each: tests/databases.py)."""
    return make_settings(tmp_path / "data", database_url=database_url)


@pytest.fixture
def db_client(db_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(db_settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def db_keys(db_settings: Settings) -> KeyStore:
    return key_store(db_settings)


def unique(prefix: str) -> str:
    # Names are unique per database; a PostgreSQL database outlives one test.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def admin(db_keys: KeyStore) -> str:
    return db_keys.create(unique("admin"), is_admin=True)


@pytest.fixture
def user(db_keys: KeyStore) -> str:
    return db_keys.create(unique("user"))


def enrolled(settings: Settings, name: str) -> list[int]:
    """``name`` in the gallery with one made-up face (no model needed to remove it)."""
    gallery = Gallery(make_engine(settings.resolved_database_url))
    face = EnrolledFace(
        "photo.png", np.zeros((150, 150, 3), np.uint8), np.zeros(128, np.float32)
    )
    return gallery.enrol(name, [face], DESCRIPTOR)["face_ids"]


# 4: images smaller than the smallest face


@pytest.mark.parametrize("type_", ["detect_faces", "celebrities"])
@pytest.mark.parametrize("size", [(19, 19), (1, 1), (30000, 1), (1, 30000), (20, 20)])
def test_an_image_smaller_than_a_face_has_no_faces(
    client: TestClient, apikey: str, type_: str, size: tuple[int, int]
) -> None:
    image = encode(Image.new("RGB", size, (120, 90, 60)), "PNG")
    body = checked(client.post(URL, data={"apikey": apikey, "type": type_}, files={"file": image}))
    assert body["status"] == 200, body
    assert body["data"]["objects"] == []
    assert (body["data"]["image"]["width"], body["data"]["image"]["height"]) == size


# 5: integers


@pytest.mark.parametrize(
    "value",
    [
        "9" * 5000,
        "0" * 5000,
        "1" * 4301,
        "99999999999999999999",
        str(2**31),
        "\u0661\u0660",  # Arabic-Indic digits
        "\uff11\uff10",  # full-width digits
        "1_0",
    ],
)
def test_only_sane_ascii_integers_are_integers(
    client: TestClient, apikey: str, value: str
) -> None:
    image = encode(Image.new("RGB", (32, 32)), "PNG")
    fields = {"apikey": apikey, "type": "objects", "max_labels": value, "min_confidence": "50"}
    body = checked(client.post(URL, data=fields, files={"file": image}))
    assert body["status"] == 421 and "max_labels" in body["status_message"], body
    fields = {"apikey": apikey, "type": "nsfw", "nsfw_min_confidence": value}
    body = checked(client.post(URL, data=fields, files={"file": image}))
    assert body["status"] == 421 and "nsfw_min_confidence" in body["status_message"], body
    body = checked(client.get(URL, params={"apikey": apikey, "type": "cache", "limit": value}))
    assert body["status"] == 421 and "limit" in body["status_message"], body


def test_ascii_integers_with_sign_and_spaces_still_count(client: TestClient, apikey: str) -> None:
    for value in (" 5 ", "+5", "05"):
        body = checked(client.get(URL, params={"apikey": apikey, "type": "cache", "limit": value}))
        assert body["status"] == 200, (value, body)


# 6: values the database would refuse, checked before it sees them


def test_a_cache_id_with_nul_is_421(db_client: TestClient, user: str) -> None:
    for result_id in ("a\x00b", "\x00", "x" * 5000):
        fields = {"apikey": user, "type": "cache", "id": result_id}
        body = checked(db_client.get(URL, params=fields))
        assert body["status"] == 421 and "id" in body["status_message"], body


@pytest.mark.parametrize("name", ["n" * 201, "a\x00b"])
def test_a_gallery_name_the_database_cannot_hold_is_421(
    db_client: TestClient, admin: str, name: str, astronaut: Image.Image
) -> None:
    photo = encode(astronaut, "PNG")
    body = checked(
        db_client.post(GALLERY, data={"apikey": admin, "name": name}, files={"file": photo})
    )
    assert body["status"] == 421 and "name" in body["status_message"], body
    path = GALLERY + quote(name, safe="")
    body = checked(db_client.delete(path, params={"apikey": admin}))
    assert body["status"] == 421, body
    body = checked(db_client.delete(path + "/faces/1", params={"apikey": admin}))
    assert body["status"] == 421, body


def test_a_photo_file_name_over_500_characters_is_421(
    db_client: TestClient, admin: str, astronaut: Image.Image
) -> None:
    photo = ("p" * 501 + ".png", encode(astronaut, "PNG"))
    body = checked(
        db_client.post(GALLERY, data={"apikey": admin, "name": unique("x")}, files={"file": photo})
    )
    assert body["status"] == 421 and "file" in body["status_message"], body


# 7: a multipart boundary python-multipart refuses


def test_a_boundary_over_256_characters_is_no_data(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    boundary = "b" * 300
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\ncache\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    with caplog.at_level(logging.INFO):
        answer = checked(client.post(URL, content=body, headers=headers))
    assert answer["status"] == 300, answer
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


# 8: a body field wins over the query string's


def test_a_multipart_body_field_wins_over_the_query(client: TestClient, apikey: str) -> None:
    response = client.post(
        URL + "?type=objects&apikey=ir_wrong",
        data={"apikey": apikey, "type": "cache"},
        files={"unrelated": ("x", b"x")},
    )
    body = checked(response)
    assert body["status"] == 200 and body["data"]["type"] == "cache", body
    response = client.post(URL + "?type=objects", data={"apikey": apikey, "type": "cache"})
    assert checked(response)["status"] == 200


# 10: an upload the client abandons


def test_an_abandoned_upload_is_one_info_line(
    client: TestClient, apikey: str, caplog: pytest.LogCaptureFixture
) -> None:
    boundary = "xyz"
    partial = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\n{apikey}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n"
    ).encode() + b"\xff\xd8" * 1000
    messages = [
        {"type": "http.request", "body": partial, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
            (b"content-length", b"9000000"),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }
    app = client.app

    async def run() -> None:
        await app(scope, receive, send)  # type: ignore[operator]

    with caplog.at_level(logging.INFO):
        assert client.portal is not None
        client.portal.call(run)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not any(m.get("status") == 500 for m in sent)
    server_lines = [r for r in caplog.records if r.name.startswith("server")]
    assert len(server_lines) == 1 and server_lines[0].levelno == logging.INFO, server_lines


# 11: access-log redaction


@pytest.mark.parametrize(
    "query",
    [
        "apikey=SECRET&type=cache",
        "api%6Bey=SECRET&type=cache",
        "%61%70%69%6b%65%79=SECRET",
        "type=cache&APIKEY=SECRET",
        "type=cache&apikey=SEC%52ET&limit=3",
    ],
)
def test_the_access_log_never_shows_a_key(query: str) -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/api/v2/?{query}", "1.1", 200),
        None,
    )
    RedactApiKeys().filter(record)
    line = record.getMessage()
    assert "SECRET" not in line and "SEC%52ET" not in line, line
    assert "/api/v2/?" in line


def test_the_access_log_line_stays_one_printable_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    from server.http.observability import format_text

    with caplog.at_level(logging.INFO, logger="imagerecognize.access"):
        client.get("/api/v2/x%0d%0arequest forged GET /admin status=200%00%7f")
        client.post(URL, data={"type": "objects\r\nrequest forged"})
    lines = [
        format_text(r.__dict__)
        for r in caplog.records
        if r.name == "imagerecognize.access"
    ]
    assert len(lines) == 2
    for line in lines:
        assert line.isprintable() and "\n" not in line and "\x00" not in line, line
    assert "x\\r\\nrequest forged" in lines[0] and "\\x00\\x7f" in lines[0]
    assert "type=objects\\r\\nrequest forged" in lines[1]


def test_a_percent_encoded_key_name_still_authenticates(client: TestClient, apikey: str) -> None:
    assert checked(client.get(URL + f"?api%6Bey={apikey}&type=cache"))["status"] == 200


# 12, 14: the gallery's delete routes


def test_a_name_with_slashes_can_be_removed(
    db_client: TestClient, db_settings: Settings, admin: str
) -> None:
    name = unique("Jean/Luc/Picard")
    enrolled(db_settings, name)
    body = checked(db_client.delete(GALLERY + name, params={"apikey": admin}))
    assert body == {"status": 200, "status_message": "OK", "data": {"removed": name}}
    (face_id,) = enrolled(db_settings, name)
    body = checked(db_client.delete(f"{GALLERY}{name}/faces/{face_id}", params={"apikey": admin}))
    assert body["data"] == {"removed": {"name": name, "face": face_id}}


@pytest.mark.parametrize("face_id", [str(2**63), "9" * 30, "-1", "x", "0x10"])
def test_a_face_id_beyond_64_bits_is_421(
    db_client: TestClient, db_settings: Settings, admin: str, face_id: str
) -> None:
    name = unique("someone")
    enrolled(db_settings, name)
    body = checked(db_client.delete(f"{GALLERY}{name}/faces/{face_id}", params={"apikey": admin}))
    assert body["status"] == 421, body


# 13: file permissions


def test_the_server_keeps_its_database_to_its_owner(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "new" / "data")
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        assert test_client.get("/health").status_code == 200
        folder = settings.data_dir
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        files = list(folder.glob("imagerecognize.db*"))
        assert folder / "imagerecognize.db" in files
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# 15: small ones


def test_405_names_the_allowed_methods(client: TestClient) -> None:
    response = client.put(URL)
    body = checked(response)
    assert body["status"] == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}


def test_results_are_neither_sniffed_nor_cached(client: TestClient, apikey: str) -> None:
    response = client.get(URL, params={"apikey": apikey, "type": "cache"})
    assert checked(response)["status"] == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_a_huge_apikey_is_401_not_421(client: TestClient) -> None:
    response = client.post(
        URL, data={"apikey": "k" * 10_000_000, "type": "cache"}, files={"x": ("x", b"x")}
    )
    assert checked(response)["status"] == 401
    response = client.post(
        URL, data={"type": "cache", "apikey": " " * 10_000_000}, files={"x": ("x", b"x")}
    )
    assert checked(response)["status"] == 400
