"""CompreFace's /api/v1/recognition/* as its clients call it: Double Take's CompreFace
detector (recognize with face_plugins=undefined and det_prob_threshold=0.8; train one photo
per POST /faces?subject=; remove with DELETE /faces?subject=), the subjects and faces
management routes, and CompreFace's error body {"message", "code"}; on real models and real
photos."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from server.http.app import create_app
from server.store.keys import KeyStore
from tests.conftest import app_state, encode, key_store, make_settings

BASE = "/api/v1/recognition"
ASTRONAUT_FACE_LEFT = 181
GRACE_FACE_LEFT = 174
# Double Take's defaults (its config): a match needs confidence >= 60 and a box of at least
# 10,000 px; below 40 its name is "unknown".
DOUBLE_TAKE_MATCH = 60.0
DOUBLE_TAKE_MIN_AREA = 10_000


def headers(key: str) -> dict[str, str]:
    return {"x-api-key": key}


def double_take_recognize(client: TestClient, key: str, photo: bytes) -> tuple[int, dict]:
    """Double Take's CompreFace recognize: FACE_PLUGINS unset is the literal "undefined"."""
    response = client.post(
        f"{BASE}/recognize?face_plugins=undefined",
        params={"det_prob_threshold": 0.8},
        headers=headers(key),
        files={"file": ("frame.jpg", photo, "image/jpeg")},
    )
    return response.status_code, response.json()


def double_take_normalize(body: dict) -> list[dict]:
    """Double Take's normalize() of a CompreFace answer (api/src/util/detectors/compreface.js):
    no ``result`` with code 28 is no faces; any other code is an error."""
    if "result" not in body:
        if body["code"] == 28:
            return []
        raise RuntimeError(body["message"])
    faces = []
    for obj in body["result"]:
        subject = obj["subjects"][0] if obj["subjects"] else None
        confidence = round(subject["similarity"] * 100, 2) if subject else 0.0
        box = obj["box"]
        area = (box["x_max"] - box["x_min"]) * (box["y_max"] - box["y_min"])
        faces.append(
            {
                "name": subject["subject"].lower() if subject and confidence >= 40 else "unknown",
                "confidence": confidence,
                "match": confidence >= DOUBLE_TAKE_MATCH and area >= DOUBLE_TAKE_MIN_AREA,
                "left": box["x_min"],
            }
        )
    return faces


def double_take_train(client: TestClient, key: str, name: str, photo: bytes) -> dict:
    # Double Take's axios call has no validateStatus here: anything but 2xx is a failure.
    response = client.post(
        f"{BASE}/faces",
        params={"subject": name},
        headers=headers(key),
        files={"file": ("train.jpg", photo, "image/jpeg")},
    )
    assert response.status_code == 201, response.text
    return response.json()


# --- fast: the error envelope and the subjects, no model loaded -----------------------------


@pytest.fixture
def admin(keys: KeyStore) -> str:
    return keys.create("admin", is_admin=True)


def test_errors_are_compreface_bodies(client: TestClient, apikey: str, admin: str) -> None:
    def error(response) -> tuple[int, int]:
        body = response.json()
        assert set(body) == {"message", "code"} and body["message"], body
        assert "Traceback" not in response.text
        return response.status_code, body["code"]

    photo = {"file": ("a.jpg", b"\xff\xd8 not really", "image/jpeg")}
    assert error(client.post(f"{BASE}/recognize", files=photo)) == (400, 20)
    assert client.post(f"{BASE}/recognize", files=photo).json()["message"] == (
        "Missing header: x-api-key"
    )
    assert error(client.post(f"{BASE}/recognize", headers=headers(apikey))) == (400, 34)
    assert error(
        client.post(f"{BASE}/recognize", headers=headers(apikey), json={"file": "%%not base64"})
    ) == (400, 21)
    assert error(
        client.post(f"{BASE}/recognize", headers=headers(apikey), json={"image": "AAAA"})
    ) == (400, 34)
    for query in (
        "det_prob_threshold=1.5",
        "det_prob_threshold=nan",
        "prediction_count=0",
        "limit=-1",
        "status=maybe",
    ):
        assert error(
            client.post(f"{BASE}/recognize?{query}", headers=headers(apikey), files=photo)
        ) == (400, 26), query
    # Keys: unknown, and the gallery's routes with a key that is not an admin's.
    assert error(client.get(f"{BASE}/subjects", headers=headers("nobody's key"))) == (401, 10)
    assert error(client.get(f"{BASE}/subjects", headers=headers(apikey))) == (403, 32)
    assert error(client.post(f"{BASE}/faces?subject=x", headers=headers(apikey), files=photo)) == (
        403,
        32,
    )
    assert error(client.delete(f"{BASE}/faces?subject=x")) == (400, 20)
    # The gallery's own: unknown subject (42) and image (11, "Image <id> not found").
    assert error(client.delete(f"{BASE}/subjects/Nobody", headers=headers(admin))) == (404, 42)
    assert error(
        client.put(f"{BASE}/subjects/Nobody", headers=headers(admin), json={"subject": "X"})
    ) == (404, 42)
    for image_id in ("12345", "not-a-uuid", "99999999999999999999"):
        assert error(client.delete(f"{BASE}/faces/{image_id}", headers=headers(admin))) == (
            404,
            11,
        )
    assert error(client.post(f"{BASE}/faces", headers=headers(admin), files=photo)) == (400, 33)
    assert error(client.post(f"{BASE}/subjects", headers=headers(admin), json={})) == (400, 26)
    assert error(
        client.post(
            f"{BASE}/subjects",
            headers={**headers(admin), "content-type": "application/json"},
            content=b"{not json",
        )
    ) == (400, 26)


def test_an_internal_error_is_a_500_without_its_text(
    client: TestClient, admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("secret database detail")

    monkeypatch.setattr(app_state(client).gallery, "people", broken)
    response = client.get(f"{BASE}/subjects", headers=headers(admin))
    assert response.status_code == 500
    assert response.json() == {"message": "Internal error", "code": 0}


def test_subjects_crud(client: TestClient, admin: str) -> None:
    def call(method: str, path: str, **kwargs: object):
        return client.request(method, f"{BASE}{path}", headers=headers(admin), **kwargs)

    assert call("GET", "/subjects").json() == {"subjects": []}
    created = call("POST", "/subjects", json={"subject": "Grace Hopper"})
    assert created.status_code == 201 and created.json() == {"subject": "Grace Hopper"}
    assert call("POST", "/subjects", json={"subject": "Grace Hopper"}).json()["code"] == 43
    assert call("POST", "/subjects", json={"subject": "Ada"}).status_code == 201
    assert call("GET", "/subjects").json() == {"subjects": ["Ada", "Grace Hopper"]}
    # Renaming to the same name or to nothing changes nothing, as in CompreFace.
    assert call("PUT", "/subjects/Ada", json={"subject": "Ada"}).json() == {"updated": False}
    assert call("PUT", "/subjects/Ada", json={"subject": "Ada Lovelace"}).json() == {
        "updated": True
    }
    assert call("GET", "/subjects").json() == {"subjects": ["Ada Lovelace", "Grace Hopper"]}
    assert call("DELETE", "/subjects/Ada Lovelace").json() == {"subject": "Ada Lovelace"}
    assert call("GET", "/subjects").json() == {"subjects": ["Grace Hopper"]}
    assert call("DELETE", "/subjects").json() == {"deleted": 1}
    assert call("GET", "/subjects").json() == {"subjects": []}
    # A subject without faces has no faces to list.
    call("POST", "/subjects", json={"subject": "Empty"})
    assert call("GET", "/faces", params={"subject": "Empty"}).json() == {
        "faces": [],
        "page_number": 0,
        "page_size": 20,
        "total_pages": 0,
        "total_elements": 0,
    }


# --- slow: real models on real photos -------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    """One server for the model tests (loading the face models once); each test empties the
    gallery it uses."""
    data_dir = tmp_path_factory.mktemp("compreface") / "data"
    settings = make_settings(data_dir)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, data_dir


@pytest.fixture
def model_client(served: tuple[TestClient, Path]) -> Iterator[TestClient]:
    client, _ = served
    yield client
    app_state(client).gallery.remove_everyone()


@pytest.fixture
def model_keys(served: tuple[TestClient, Path]) -> KeyStore:
    return key_store(make_settings(served[1]))


@pytest.mark.slow
def test_double_take_trains_recognises_and_removes(
    model_client: TestClient,
    model_keys: KeyStore,
    astronaut: Image.Image,
    grace_hopper: Image.Image,
    coffee: Image.Image,
) -> None:
    client = model_client
    admin = model_keys.create("double take", quota=100, is_admin=True)
    record = model_keys.authenticate(admin)
    assert record is not None
    # Double Take trains one photo per call.
    first = double_take_train(client, admin, "Eileen", encode(astronaut, quality=95))
    assert first["subject"] == "Eileen" and str(uuid.UUID(first["image_id"])) == first["image_id"]
    flipped = encode(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    second = double_take_train(client, admin, "Eileen", flipped)
    assert second["image_id"] != first["image_id"]

    status, body = double_take_recognize(client, admin, encode(astronaut))
    assert status == 200, body
    (face,) = body["result"]
    assert set(face) == {"box", "subjects"}  # "undefined" asks for no plugin
    assert face["box"]["probability"] >= 0.8
    assert [s["subject"] for s in face["subjects"]] == ["Eileen"]
    (seen,) = double_take_normalize(body)
    assert seen["name"] == "eileen" and seen["match"], seen
    assert abs(seen["left"] - ASTRONAUT_FACE_LEFT) <= 4

    # A stranger is not given a name (CompreFace itself would name its nearest subject).
    status, body = double_take_recognize(client, admin, encode(grace_hopper))
    assert status == 200 and len(body["result"]) == 1
    assert body["result"][0]["subjects"] == []
    assert double_take_normalize(body)[0]["name"] == "unknown"
    assert abs(body["result"][0]["box"]["x_min"] - GRACE_FACE_LEFT) <= 6

    # No face: code 28 and no result, which Double Take reads as "no faces".
    status, body = double_take_recognize(client, admin, encode(coffee))
    assert (status, body["code"]) == (400, 28) and "result" not in body
    assert double_take_normalize(body) == []

    # One quota unit per analysis, the no-face one too.
    assert model_keys.remaining(record) == 100 - 3

    # Double Take's remove: every face of the subject goes, and the subject with them.
    removed = client.delete(f"{BASE}/faces", params={"subject": "Eileen"}, headers=headers(admin))
    assert removed.status_code == 200 and removed.json() == {"deleted": 2}
    status, body = double_take_recognize(client, admin, encode(astronaut))
    assert status == 200 and body["result"][0]["subjects"] == []
    assert client.get(f"{BASE}/subjects", headers=headers(admin)).json() == {"subjects": []}
    again = client.delete(f"{BASE}/faces", params={"subject": "Eileen"}, headers=headers(admin))
    assert again.json() == {"deleted": 0}


@pytest.mark.slow
def test_recognize_options_base64_landmarks_limit_and_status(
    model_client: TestClient,
    model_keys: KeyStore,
    astronaut: Image.Image,
    grace_hopper: Image.Image,
) -> None:
    client = model_client
    admin = model_keys.create("options admin", is_admin=True)
    user = model_keys.create("viewer")  # recognition needs no admin key
    double_take_train(client, admin, "Eileen Collins", encode(astronaut))
    double_take_train(client, admin, "Grace Hopper", encode(grace_hopper))
    two = Image.new("RGB", (512 + grace_hopper.width, 600), (128, 128, 128))
    two.paste(astronaut, (0, 0))
    two.paste(grace_hopper, (512, 0))
    photo = encode(two, quality=95)

    response = client.post(
        f"{BASE}/recognize",
        params={"face_plugins": "landmarks,age", "prediction_count": 5, "status": "true"},
        headers=headers(user),
        json={"file": base64.b64encode(photo).decode()},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["plugins_versions"]) == {"detector", "calculator"}
    by_left = sorted(body["result"], key=lambda face: face["box"]["x_min"])
    assert [[s["subject"] for s in face["subjects"]] for face in by_left] == [
        ["Eileen Collins"],
        ["Grace Hopper"],
    ]
    for face in by_left:
        box = face["box"]
        assert 0 <= box["x_min"] < box["x_max"] <= two.width
        assert 0 <= box["y_min"] < box["y_max"] <= two.height
        assert 0.5 < face["subjects"][0]["similarity"] <= 1.0
        assert "age" not in face  # plugins we do not have are ignored
        assert len(face["landmarks"]) == 5
        assert all(
            box["x_min"] <= x <= box["x_max"] and box["y_min"] <= y <= box["y_max"]
            for x, y in face["landmarks"]
        )
    left_eye, right_eye = by_left[1]["landmarks"][:2]
    assert left_eye[0] < right_eye[0]  # the image's left eye first, as CompreFace's

    # limit=1 keeps the largest face only.
    areas = [
        (f["box"]["x_max"] - f["box"]["x_min"]) * (f["box"]["y_max"] - f["box"]["y_min"])
        for f in by_left
    ]
    largest = by_left[areas.index(max(areas))]
    one = client.post(
        f"{BASE}/recognize?limit=1",
        headers=headers(user),
        files={"file": ("two.jpg", photo, "image/jpeg")},
    ).json()
    assert [face["box"] for face in one["result"]] == [largest["box"]]
    # A threshold above every face's probability leaves none: no face (28).
    none = client.post(
        f"{BASE}/recognize?det_prob_threshold=1",
        headers=headers(user),
        files={"file": ("two.jpg", photo, "image/jpeg")},
    )
    if all(face["box"]["probability"] < 1.0 for face in by_left):
        assert (none.status_code, none.json()["code"]) == (400, 28)
    # Not an image: 400, code 21.
    bad = client.post(
        f"{BASE}/recognize",
        headers=headers(user),
        files={"file": ("notes.txt", b"hello, not a photo", "text/plain")},
    )
    assert (bad.status_code, bad.json()["code"]) == (400, 21)


@pytest.mark.slow
def test_faces_paging_renames_and_bad_training_photos(
    model_client: TestClient,
    model_keys: KeyStore,
    astronaut: Image.Image,
    grace_hopper: Image.Image,
    coffee: Image.Image,
) -> None:
    client = model_client
    admin = model_keys.create("faces admin", is_admin=True)
    width, height = astronaut.size
    eileen = [
        double_take_train(client, admin, "eileen", data)["image_id"]
        for data in (
            encode(astronaut),
            encode(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
            encode(astronaut.crop((width // 10, 0, width, height * 9 // 10))),
        )
    ]
    grace = double_take_train(client, admin, "grace", encode(grace_hopper))["image_id"]

    def page(**params: object) -> dict:
        response = client.get(f"{BASE}/faces", params=params, headers=headers(admin))
        assert response.status_code == 200, response.text
        return response.json()

    first = page(page=0, size=3)
    assert first["faces"] == [{"image_id": i, "subject": "eileen"} for i in eileen]
    assert (first["page_number"], first["page_size"]) == (0, 3)
    assert (first["total_pages"], first["total_elements"]) == (2, 4)
    assert page(page=1, size=3)["faces"] == [{"image_id": grace, "subject": "grace"}]
    assert page(page=5, size=3)["faces"] == []
    assert page(subject="grace")["total_elements"] == 1
    assert page()["page_size"] == 20

    # One face by its id; its subject keeps the others and is still recognised.
    removed = client.delete(f"{BASE}/faces/{eileen[0]}", headers=headers(admin))
    assert removed.json() == {"image_id": eileen[0], "subject": "eileen"}
    assert page(subject="eileen")["total_elements"] == 2
    # A rename keeps the faces, and recognition answers the new name.
    renamed = client.put(
        f"{BASE}/subjects/eileen", headers=headers(admin), json={"subject": "Eileen Collins"}
    )
    assert renamed.json() == {"updated": True}
    status, body = double_take_recognize(client, admin, encode(astronaut))
    assert status == 200 and body["result"][0]["subjects"][0]["subject"] == "Eileen Collins"

    # Training photos CompreFace refuses: no face (28), two faces (31), not an image (21);
    # nothing is enrolled from them.
    two = Image.new("RGB", (512 + grace_hopper.width, 600), (128, 128, 128))
    two.paste(astronaut, (0, 0))
    two.paste(grace_hopper, (512, 0))
    for data, code in ((encode(coffee), 28), (encode(two), 31), (b"hello", 21)):
        response = client.post(
            f"{BASE}/faces",
            params={"subject": "someone"},
            headers=headers(admin),
            files={"file": ("x.jpg", data, "image/jpeg")},
        )
        assert (response.status_code, response.json()["code"]) == (400, code)
    assert page()["total_elements"] == 3
    subjects = client.get(f"{BASE}/subjects", headers=headers(admin)).json()["subjects"]
    assert subjects == ["Eileen Collins", "grace"]
