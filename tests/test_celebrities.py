"""celebrities: the operator's gallery through the API and the CLI, and recognition against
it with dlib's descriptor on MTCNN faces."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance

from models.celebrities.dlib_faces import FacenetFaceRecognizer
from server.http.app import create_app
from server.settings import Settings
from server.store.db import open_database
from server.store.gallery import Gallery
from server.store.keys import KeyStore
from tests.conftest import app_state, encode, make_settings, post_api, run_cli

pytestmark = pytest.mark.slow  # real models or live servers

GALLERY = "/api/v2/gallery/"
ASTRONAUT_FACE_LEFT = 181
GRACE_FACE_LEFT = 174


@pytest.fixture
def admin(keys: KeyStore) -> str:
    return keys.create("admin", is_admin=True)


def enrol(client: TestClient, key: str, name: str, *photos: tuple[str, bytes]) -> dict:
    response = client.post(
        GALLERY,
        data={"apikey": key, "name": name},
        files=[("file", (filename, data)) for filename, data in photos],
    )
    body = response.json()
    assert response.status_code == body["status"]
    return body


def celebrities(client: TestClient, key: str, data: bytes) -> dict:
    body = post_api(client, {"apikey": key, "type": "celebrities"}, data)
    assert body["status"] == 200, body
    return body["data"]


def variants(photo: Image.Image) -> dict[str, bytes]:
    width, height = photo.size
    return {
        "flipped": encode(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        "cropped": encode(photo.crop((width // 10, 0, width, height * 9 // 10))),
        "half": encode(photo.resize((width // 2, height // 2))),
        "jpeg40": encode(photo, quality=40),
        "brighter": encode(ImageEnhance.Brightness(photo).enhance(1.3)),
    }


def test_enrolled_people_are_recognised(
    client: TestClient,
    admin: str,
    apikey: str,
    astronaut: Image.Image,
    grace_hopper: Image.Image,
) -> None:
    assert (
        enrol(client, admin, "Eileen Collins", ("eileen.png", encode(astronaut, "PNG")))["data"][
            "name"
        ]
        == "Eileen Collins"
    )
    assert (
        enrol(client, admin, "Grace Hopper", ("grace.jpg", encode(grace_hopper)))["status"] == 200
    )
    for person, photo in (("Eileen Collins", astronaut), ("Grace Hopper", grace_hopper)):
        for variant, data in variants(photo).items():
            data_ = celebrities(client, apikey, data)
            names = [o["name"] for o in data_["objects"]]
            assert names == [person], (person, variant, data_)
            assert data_["objects"][0]["confidence"] > 50
            assert data_["unrecognized"] == []
    composite = Image.new("RGB", (512 + grace_hopper.width, 600), (128, 128, 128))
    composite.paste(astronaut, (0, 0))
    composite.paste(grace_hopper, (512, 0))
    found = celebrities(client, apikey, encode(composite, quality=95))["objects"]
    assert sorted(o["name"] for o in found) == ["Eileen Collins", "Grace Hopper"]
    by_name = {o["name"]: o for o in found}
    assert abs(by_name["Eileen Collins"]["box"]["left"] - ASTRONAUT_FACE_LEFT) <= 4
    assert abs(by_name["Grace Hopper"]["box"]["left"] - (512 + GRACE_FACE_LEFT)) <= 6
    assert set(by_name["Grace Hopper"]["landmarks"]) == {
        "left_eye",
        "right_eye",
        "nose",
        "mouth_left",
        "mouth_right",
    }


def test_unknown_faces_and_empty_gallery(
    client: TestClient,
    admin: str,
    apikey: str,
    astronaut: Image.Image,
    grace_hopper: Image.Image,
) -> None:
    empty = celebrities(client, apikey, encode(grace_hopper))
    assert empty["objects"] == [] and len(empty["unrecognized"]) == 1
    unknown = empty["unrecognized"][0]
    assert "name" not in unknown and unknown["confidence"] > 99
    assert abs(unknown["box"]["left"] - GRACE_FACE_LEFT) <= 6
    enrol(client, admin, "Eileen Collins", ("eileen.png", encode(astronaut, "PNG")))
    # Grace Hopper is not enrolled: she stays unrecognised, also after the gallery changed
    # (the stored answer of the same request is not reused across gallery versions).
    again = celebrities(client, apikey, encode(grace_hopper))
    assert again["objects"] == [] and len(again["unrecognized"]) == 1 and not again["cached"]
    assert celebrities(client, apikey, encode(astronaut))["objects"][0]["name"] == (
        "Eileen Collins"
    )


def test_gallery_needs_an_admin_key(client: TestClient, apikey: str, astronaut) -> None:
    body = enrol(client, apikey, "Eileen Collins", ("eileen.png", encode(astronaut)))
    assert body["status"] == 401
    assert client.get(GALLERY, params={"apikey": apikey}).status_code == 401
    assert client.delete(GALLERY + "Eileen Collins", params={"apikey": apikey}).status_code == 401
    assert client.get(GALLERY).status_code == 400


def test_enrolment_refuses_bad_photos_and_changes_nothing(
    client: TestClient,
    admin: str,
    astronaut: Image.Image,
    grace_hopper: Image.Image,
    coffee: Image.Image,
) -> None:
    two = Image.new("RGB", (512 + grace_hopper.width, 600), (128, 128, 128))
    two.paste(astronaut, (0, 0))
    two.paste(grace_hopper, (512, 0))
    cases = [
        (("coffee.jpg", encode(coffee)), "coffee.jpg: no face found"),
        (("two.jpg", encode(two)), "two.jpg: 2 faces found"),
        (("notes.txt", b"hello"), "notes.txt: invalid file format"),
    ]
    for photo, message in cases:
        body = enrol(client, admin, "Eileen Collins", ("eileen.png", encode(astronaut)), photo)
        assert body["status"] == 421 and message in body["status_message"], body
    assert enrol(client, admin, "", ("eileen.png", encode(astronaut)))["status"] == 421
    listed = client.get(GALLERY, params={"apikey": admin}).json()
    assert listed["data"]["people"] == []


def test_gallery_list_remove_and_restart(
    settings: Settings, admin: str, apikey: str, astronaut: Image.Image
) -> None:
    with TestClient(create_app(settings)) as client:
        body = enrol(
            client,
            admin,
            "Eileen Collins",
            ("a.png", encode(astronaut, "PNG")),
            ("b.jpg", encode(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT))),
        )
        face_ids = body["data"]["face_ids"]
        assert len(face_ids) == 2
    # A new server process sees the same gallery.
    with TestClient(create_app(settings)) as client:
        people = client.get(GALLERY, params={"apikey": admin}).json()["data"]["people"]
        assert [(p["name"], len(p["faces"])) for p in people] == [("Eileen Collins", 2)]
        assert all(face["indexed"] for face in people[0]["faces"])
        removed = client.delete(
            f"{GALLERY}Eileen Collins/faces/{face_ids[0]}", params={"apikey": admin}
        )
        assert removed.status_code == 200
        assert celebrities(client, apikey, encode(astronaut))["objects"][0]["name"] == (
            "Eileen Collins"
        )
        assert (
            client.delete(GALLERY + "Eileen Collins", params={"apikey": admin}).json()["status"]
            == 200
        )
        assert (
            client.delete(GALLERY + "Eileen Collins", params={"apikey": admin}).json()["status"]
            == 421
        )
        result = celebrities(client, apikey, encode(astronaut))
        assert result["objects"] == [] and len(result["unrecognized"]) == 1


def test_gallery_cli(
    tmp_path: Path, astronaut: Image.Image, grace_hopper: Image.Image, coffee: Image.Image
) -> None:
    data_dir = tmp_path / "data"
    photos = tmp_path / "people"
    (photos / "Eileen Collins").mkdir(parents=True)
    (photos / "Grace Hopper").mkdir()
    astronaut.save(photos / "Eileen Collins" / "1.png")
    grace_hopper.save(photos / "Grace Hopper" / "1.jpg")
    coffee.save(photos / "Grace Hopper" / "2.jpg")  # no face: skipped, reported
    imported = run_cli(data_dir, "gallery", "import", str(photos))
    assert imported.returncode == 1
    assert "no face found" in imported.stderr and "2 photos of 2 people enrolled" in imported.stderr
    listing = run_cli(data_dir, "gallery", "list").stdout
    assert "Eileen Collins" in listing and "Grace Hopper" in listing
    single = tmp_path / "eileen.jpg"
    astronaut.save(single)
    assert (
        run_cli(data_dir, "gallery", "add", "Sally Ride", str(tmp_path / "missing.jpg")).returncode
        == 1
    )
    assert run_cli(data_dir, "gallery", "remove", "Grace Hopper").returncode == 0
    assert "Grace Hopper" not in run_cli(data_dir, "gallery", "list").stdout
    reindexed = run_cli(data_dir, "gallery", "reindex")
    assert reindexed.returncode == 0 and "1 face(s)" in reindexed.stdout

    # Another collection: the same name again, and where the face was in its photo is kept.
    assert run_cli(data_dir, "gallery", "collections", "create", "crew").returncode == 0
    added = run_cli(
        data_dir, "gallery", "add", "Eileen Collins", str(single), "--collection", "crew"
    )
    assert added.returncode == 0, added.stderr
    gallery = Gallery(open_database(make_settings(data_dir).resolved_database_url))
    (record,), total = gallery.face_records(collection="crew")
    assert total == 1 and record.person == "Eileen Collins" and record.source == str(single)
    assert str(uuid.UUID(record.image_id)) == record.image_id and record.confidence > 0.9
    left, top, width, height = record.box
    assert 0 < left < 1 and 0 < top < 1 and 0.05 < width < 1 and 0.05 < height < 1
    assert [p["name"] for p in gallery.people()] == ["Eileen Collins"]  # the default one's
    assert gallery.faces()[1] == 1


@pytest.fixture
def facenet_settings(tmp_path: Path) -> Iterator[Settings]:
    from facenet_pytorch import InceptionResnetV1

    settings = make_settings(tmp_path / "data", celebrities_model="facenet_vggface2")
    settings.resolved_model_dir.mkdir(parents=True)
    torch.manual_seed(0)
    made_up = InceptionResnetV1(pretrained=None, classify=True, num_classes=8631)
    torch.save(
        made_up.state_dict(), FacenetFaceRecognizer.weights_file(settings.resolved_model_dir)
    )
    yield settings


def test_fetched_facenet_descriptor_answers(
    facenet_settings: Settings, astronaut: Image.Image
) -> None:
    with TestClient(create_app(facenet_settings)) as client:
        store = KeyStore(app_state(client).keys.engine)
        admin, user = store.create("admin", is_admin=True), store.create("user")
        assert (
            enrol(client, admin, "Eileen Collins", ("e.png", encode(astronaut, "PNG")))["status"]
            == 200
        )
        data = celebrities(client, user, encode(astronaut, "PNG"))
        assert data["model"]["name"] == "facenet_vggface2"
        # The same image gives the same descriptor: distance 0, whatever the weights.
        assert [o["name"] for o in data["objects"]] == ["Eileen Collins"]
        assert data["objects"][0]["confidence"] == 100.0


def test_exact_search_finds_the_nearest() -> None:
    import numpy as np

    from server.store.gallery import GalleryMatrix

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(5000, 128)).astype(np.float32)
    matrix = GalleryMatrix(1, [f"p{i}" for i in range(5000)], vectors)
    for _ in range(5):
        query = rng.normal(size=128).astype(np.float32)
        distances = np.linalg.norm(vectors - query, axis=1)
        name, distance = matrix.nearest(query)
        assert name == f"p{int(distances.argmin())}"
        assert abs(distance - float(distances.min())) < 1e-3
