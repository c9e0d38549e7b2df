"""CompreFace's services as Exadel's official Python client (`compreface-sdk` 0.6.0) calls
them, against a live server: the recognition service with its face collection and subjects,
the detection service, the verification service and a face verified against an enrolled one;
plus what the client does not wrap (several faces deleted at once, an enrolled face's image)
and ids that are never handed out again. Real models on real photos.

The client's own package pins requests-toolbelt 0.9.1, which fails to import beside urllib3 2
(as this suite's other clients need), so ``SdkCalls`` sends what its source sends: the same
paths, query strings built as ``?&name=value``, and multipart parts named as it names them with
its file name ``image.jpg``."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator

import pytest
import requests
from PIL import Image

from tests.conftest import LiveServer, encode, key_store, make_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str, str]]:
    data_dir = tmp_path_factory.mktemp("compreface") / "data"
    keys = key_store(make_settings(data_dir))
    admin = keys.create("compreface admin", is_admin=True)
    user = keys.create("compreface user", quota=20)
    live = LiveServer(data_dir)
    yield live, admin, user
    live.stop()


def base(live: LiveServer) -> str:
    return f"http://127.0.0.1:{live.port}/api/v1"


class SdkCalls:
    """The calls of compreface-sdk 0.6.0's services (compreface/client/*.py), for one key."""

    def __init__(self, live: LiveServer, key: str):
        self.base = base(live)
        self.key = key

    def _post(self, path: str, files: dict[str, bytes], options: dict[str, object]) -> dict:
        url = self.base + path + "".join(f"&{name}={value}" for name, value in options.items())
        parts = {name: ("image.jpg", data) for name, data in files.items()}
        return requests.post(url, files=parts, headers={"x-api-key": self.key}, timeout=60).json()

    def add(self, image: bytes, subject: str, options: dict[str, object] | None = None) -> dict:
        return self._post(f"/recognition/faces?subject={subject}", {"file": image}, options or {})

    def list(self) -> dict:
        return requests.get(
            f"{self.base}/recognition/faces", headers={"x-api-key": self.key}, timeout=60
        ).json()

    def delete(self, image_id: str) -> dict:
        return requests.delete(
            f"{self.base}/recognition/faces/{image_id}", headers={"x-api-key": self.key}, timeout=60
        ).json()

    def delete_all(self, subject: str) -> dict:
        return requests.delete(
            f"{self.base}/recognition/faces?subject={subject}",
            headers={"x-api-key": self.key},
            timeout=60,
        ).json()

    def subjects(self) -> dict:
        return requests.get(
            f"{self.base}/recognition/subjects", headers={"x-api-key": self.key}, timeout=60
        ).json()

    def recognize(self, image: bytes, options: dict[str, object]) -> dict:
        return self._post("/recognition/recognize?", {"file": image}, options)

    def verify_face(self, image: bytes, image_id: str, options: dict[str, object]) -> dict:
        return self._post(f"/recognition/faces/{image_id}/verify?", {"file": image}, options)

    def detect(self, image: bytes, options: dict[str, object] | None = None) -> dict:
        return self._post("/detection/detect?", {"file": image}, options or {})

    def verify(self, source: bytes, target: bytes, options: dict | None = None) -> dict:
        files = {"source_image": source, "target_image": target}
        return self._post("/verification/verify?", files, options or {})


def test_recognition_detection_and_verification_services(
    server: tuple[LiveServer, str, str],
    astronaut: Image.Image,
    grace_hopper: Image.Image,
    coffee: Image.Image,
) -> None:
    live, admin, user = server
    astronaut_jpeg = encode(astronaut, quality=95)
    flipped = encode(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    grace = encode(grace_hopper)

    faces = SdkCalls(live, admin)
    added = faces.add(astronaut_jpeg, "Eileen")
    assert added["subject"] == "Eileen" and str(uuid.UUID(added["image_id"])) == added["image_id"]
    assert faces.add(grace, "Grace")["subject"] == "Grace"
    listed = faces.list()
    assert {f["subject"] for f in listed["faces"]} == {"Eileen", "Grace"}
    assert faces.subjects() == {"subjects": ["Eileen", "Grace"]}

    recognized = faces.recognize(flipped, {"limit": 0, "prediction_count": 1})
    (face,) = recognized["result"]
    assert [s["subject"] for s in face["subjects"]] == ["Eileen"]

    # Detection: every face, with the plugins we compute (landmarks; the embedding as the
    # calculator plugin) and the versions asked for with status.
    detection = SdkCalls(live, user)
    detected = detection.detect(
        astronaut_jpeg, {"face_plugins": "landmarks,calculator", "status": "true"}
    )
    (found,) = detected["result"]
    assert 0.9 <= found["box"]["probability"] <= 1.0
    assert abs(found["box"]["x_min"] - 181) <= 4
    assert len(found["landmarks"]) == 5 and len(found["embedding"]) == 128
    assert detected["plugins_versions"]["detector"] == "mtcnn"
    no_face = detection.detect(encode(coffee))
    assert no_face["code"] == 28 and "result" not in no_face

    # Verification: the source's face against each face of the target, most similar first.
    verification = detection
    same = verification.verify(astronaut_jpeg, flipped)
    (outcome,) = same["result"]
    assert abs(outcome["source_image_face"]["box"]["x_min"] - 181) <= 4
    (match,) = outcome["face_matches"]
    assert match["similarity"] > 0.5  # the same person: over the match threshold
    other = verification.verify(astronaut_jpeg, grace)
    assert other["result"][0]["face_matches"][0]["similarity"] < 0.5

    # A face verified against one enrolled face (the collection's verify).
    verified = detection.verify_face(flipped, added["image_id"], {"limit": 0})
    assert verified["result"][0]["similarity"] > 0.5
    stranger = detection.verify_face(grace, added["image_id"], {})
    assert stranger["result"][0]["similarity"] < 0.5
    unknown = detection.verify_face(flipped, str(uuid.uuid4()), {})
    assert unknown["code"] == 11

    # The enrolled face as the gallery keeps it: the aligned crop, a JPEG.
    image = requests.get(
        f"{base(live)}/recognition/faces/{added['image_id']}/img",
        headers={"x-api-key": admin},
        timeout=30,
    )
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).size == (150, 150)

    # One unit per call: detect twice (no face too), verify twice (one per pair), verify
    # against an enrolled face twice; an unknown face id costs nothing.
    quota = requests.get(
        f"http://127.0.0.1:{live.port}/api/v2/",
        params={"apikey": user, "type": "cache"},
        headers={"accept": "application/json"},
        timeout=30,
    )
    assert quota.json()["data"]["quota"] == 20 - 6

    # Every path under /api/v1/ answers in CompreFace's body: 405, 404.
    assert requests.get(
        f"{base(live)}/detection/detect", headers={"x-api-key": user}, timeout=30
    ).status_code == 405
    assert requests.post(
        f"{base(live)}/detection/nothing", headers={"x-api-key": user}, timeout=30
    ).json()["code"] == 0

    faces.delete_all("Eileen")
    faces.delete_all("Grace")


def test_ids_never_come_back_and_several_go_at_once(
    server: tuple[LiveServer, str, str], astronaut: Image.Image, grace_hopper: Image.Image
) -> None:
    live, admin, _ = server
    faces = SdkCalls(live, admin)
    first = faces.add(encode(astronaut), "Eileen")["image_id"]
    second = faces.add(encode(grace_hopper), "Grace")["image_id"]
    # The newest face goes; the next one enrolled gets another id, and a stale delete of the
    # old id is a 404, never another person's face.
    assert faces.delete(second) == {"image_id": second, "subject": "Grace"}
    third = faces.add(encode(grace_hopper), "Grace")["image_id"]
    assert third not in (first, second)
    stale = requests.delete(
        f"{base(live)}/recognition/faces/{second}", headers={"x-api-key": admin}, timeout=30
    )
    assert stale.status_code == 404 and stale.json()["code"] == 11
    assert {f["image_id"] for f in faces.list()["faces"]} == {first, third}

    # Several at once: those that exist are deleted and listed, the others ignored.
    deleted = requests.post(
        f"{base(live)}/recognition/faces/delete",
        json=[first, second, third],
        headers={"x-api-key": admin},
        timeout=30,
    )
    assert deleted.status_code == 200
    assert deleted.headers["content-type"] == "application/json"
    assert deleted.json() == [
        {"image_id": first, "subject": "Eileen"},
        {"image_id": third, "subject": "Grace"},
    ]
    assert faces.list()["faces"] == []


def test_hostile_bodies_and_names_are_clear_errors(server: tuple[LiveServer, str, str]) -> None:
    live, admin, _ = server
    headers = {"x-api-key": admin, "content-type": "application/json"}
    deep = ("[" * 10_000 + "]" * 10_000).encode()
    for method, path in (
        ("POST", "/recognition/recognize"),
        ("POST", "/recognition/subjects"),
        ("POST", "/recognition/faces?subject=x"),
        ("POST", "/recognition/faces/delete"),
    ):
        answer = requests.request(method, base(live) + path, data=deep, headers=headers, timeout=30)
        assert answer.status_code == 400 and answer.json()["code"] == 26, (path, answer.text)
    names = (".", "..", "a\x00b", "tab\there", "\ud800")
    for name in names:
        body = json.dumps({"subject": name})  # escaped: a lone surrogate is \ud800
        answer = requests.post(
            f"{base(live)}/recognition/subjects", data=body.encode(), headers=headers, timeout=30
        )
        assert answer.status_code == 400, (name, answer.text)
        assert answer.json()["code"] == 26 and answer.json()["message"], answer.text
    subjects = requests.get(
        f"{base(live)}/recognition/subjects", headers={"x-api-key": admin}, timeout=30
    )
    assert not set(subjects.json()["subjects"]) & set(names)
