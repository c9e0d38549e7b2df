"""Amazon Rekognition's API, called with boto3 itself (the real client, its own signing,
parsing, typed exceptions and retries) against the app served over HTTP by uvicorn: every
operation, the signature's failures, the image limit, ThrottlingException on a full queue
(retried by boto3), quota, and a collection round trip (docs/compat.md)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import boto3
import pytest
import requests
import uvicorn
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from fastapi import FastAPI
from PIL import Image

from models.detect_faces.mtcnn import MtcnnFaceDetector
from scripts.rendered_text import render_pages
from server.errors import ApiError, ErrorKind
from server.http.app import create_app
from server.http.rekognition import errors as aws_errors
from server.service.face_collections import similarity, similarity_from_match_confidence
from server.settings import Settings
from server.store.aws_credentials import AwsCredentialStore, credentials_cipher
from server.store.keys import KeyStore
from tests.conftest import LiveServer, encode, free_port, key_store, make_settings

FACE_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class ThreadedServer:
    """The app under uvicorn in a thread of this process, on a free port."""

    def __init__(self, app: FastAPI):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def credentials_for(settings: Settings, keys: KeyStore, name: str, **key: object):
    """A new key named ``name`` and its AWS-style credentials."""
    keys.create(name, **key)
    store = AwsCredentialStore(keys.engine, credentials_cipher(settings))
    return store.issue(name)


def rekognition(url: str, issued, *, retries: int = 1, region: str = "eu-west-1"):
    return boto3.client(
        "rekognition",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=issued.access_key_id,
        aws_secret_access_key=issued.secret_access_key,
        config=Config(retries={"mode": "standard", "max_attempts": retries}),
    )


def code_of(error: ClientError) -> str:
    return error.response["Error"]["Code"]


# Fast: the signature and the error shape, no model loaded.


@pytest.fixture
def quiet(tmp_path: Path) -> Iterator[tuple[ThreadedServer, Settings, KeyStore]]:
    settings = make_settings(tmp_path / "data", preload=False)
    server = ThreadedServer(create_app(settings))
    try:
        yield server, settings, key_store(settings)
    finally:
        server.stop()


def test_requests_are_signed_as_aws_signs_them(quiet) -> None:
    server, settings, keys = quiet
    issued = credentials_for(settings, keys, "admin", is_admin=True)
    client = rekognition(server.url, issued)
    assert client.list_collections()["CollectionIds"] == ["default"]

    # A wrong secret, an unknown access key id.
    wrong = dataclass_like(issued, secret_access_key="x" * 40)
    with pytest.raises(ClientError) as refused:
        rekognition(server.url, wrong).list_collections()
    assert code_of(refused.value) == "InvalidSignatureException"
    unknown = dataclass_like(issued, access_key_id="IRAKUNKNOWNUNKNOWN00")
    with pytest.raises(ClientError) as refused:
        rekognition(server.url, unknown).list_collections()
    assert code_of(refused.value) == "UnrecognizedClientException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    # A tampered body, a signature 20 minutes old, none at all.
    body = b'{"CollectionId": "mine"}'
    headers = signed_headers(server.url, issued, "CreateCollection", body)
    tampered = requests.post(server.url + "/", data=b'{"CollectionId": "evil"}', headers=headers)
    assert tampered.status_code == 400
    assert tampered.json()["__type"] == "InvalidSignatureException"
    assert tampered.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=20)
    stale = signed_headers(server.url, issued, "CreateCollection", body, at=old)
    expired = requests.post(server.url + "/", data=body, headers=stale)
    assert expired.json()["__type"] == "InvalidSignatureException"
    assert "Signature expired" in expired.json()["message"]
    unsigned = requests.post(
        server.url + "/",
        data=body,
        headers={"X-Amz-Target": "RekognitionService.CreateCollection"},
    )
    assert unsigned.status_code == 403
    assert unsigned.json()["__type"] == "MissingAuthenticationTokenException"
    # The JS SDK's way, a signed x-amz-content-sha256, replayed with another body.
    hashed = signed_headers(server.url, issued, "CreateCollection", body, content_sha256=True)
    assert requests.post(server.url + "/", data=body, headers=hashed).status_code == 200
    replayed = requests.post(server.url + "/", data=b'{"CollectionId": "evil2"}', headers=hashed)
    assert replayed.json()["__type"] == "InvalidSignatureException"
    assert client.list_collections()["CollectionIds"] == ["default", "mine"]

    # POST / without X-Amz-Target is not Rekognition's: as before, 405 in the v2 envelope.
    plain = requests.post(server.url + "/", data=b"x")
    assert plain.status_code == 405 and plain.json()["status"] == 405


def test_errors_in_aws_shape_and_collections_need_an_admin(quiet) -> None:
    server, settings, keys = quiet
    user = rekognition(server.url, credentials_for(settings, keys, "user", quota=3))
    with pytest.raises(user.exceptions.AccessDeniedException):
        user.create_collection(CollectionId="mine")
    with pytest.raises(user.exceptions.ResourceNotFoundException):
        user.search_faces(CollectionId="nothing-here", FaceId=str(uuid.uuid4()))
    # An image over 5 MiB: ImageTooLargeException, read (about 7 MB of JSON) and refused.
    with pytest.raises(user.exceptions.ImageTooLargeException):
        user.detect_labels(Image={"Bytes": b"\xff" * (5 * 1024 * 1024 + 1)})
    # Exactly 5 MiB is within the limit: read whole, then refused for what it is.
    with pytest.raises(user.exceptions.InvalidImageFormatException):
        user.detect_faces(Image={"Bytes": b"\xff" * (5 * 1024 * 1024)})
    with pytest.raises(user.exceptions.InvalidParameterException):
        user.detect_labels(Image={"Bytes": b"x"}, MinConfidence=101)
    # S3 images: refused, since no S3-compatible store is configured.
    with pytest.raises(user.exceptions.InvalidS3ObjectException) as refused:
        user.detect_labels(Image={"S3Object": {"Bucket": "photos", "Name": "a.jpg"}})
    assert "only from the request" in str(refused.value)
    # An operation of Rekognition's that this server does not serve.
    with pytest.raises(ClientError) as refused:
        user.get_celebrity_info(Id="0123456789abcdef")
    assert code_of(refused.value) == "UnknownOperationException"
    # Nothing was charged for refused requests.
    assert keys.find("user").quota == 3


def test_every_error_kind_has_an_aws_code() -> None:
    assert set(aws_errors.ERROR_CODES) == set(ErrorKind)
    throttled = aws_errors.from_api_error(
        ApiError(ErrorKind.UNAVAILABLE, "server overloaded", retry_after=1)
    )
    assert throttled.code == "ThrottlingException" and throttled.status == 400
    assert aws_errors.from_api_error(ApiError(ErrorKind.QUOTA_REACHED)).code == (
        "ServiceQuotaExceededException"
    )


def test_similarity_is_80_at_the_gallery_threshold() -> None:
    assert similarity(0.0, 0.5) == 100.0
    assert similarity(0.5, 0.5) == 80.0
    assert similarity(0.62, 0.5) < 80.0
    # The celebrities' match confidence, 50 at the threshold, is 80 on this scale.
    assert similarity_from_match_confidence(50.0) == 80.0
    assert similarity_from_match_confidence(100.0) == 100.0
    assert similarity_from_match_confidence(77.8) == pytest.approx(similarity(0.222, 0.5), abs=1e-3)


def dataclass_like(issued, **changes):
    return type(issued)(**{**issued.__dict__, **changes})



def signed_headers(
    url: str,
    issued,
    operation: str,
    body: bytes,
    *,
    at: datetime | None = None,
    content_sha256: bool = False,
) -> dict[str, str]:
    """Headers of a request signed by botocore, as boto3 (or, with ``content_sha256``, the
    JS SDK) signs it; ``at``: a time other than now."""
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"RekognitionService.{operation}",
        },
    )
    if content_sha256:
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    signer = SigV4Auth(
        Credentials(issued.access_key_id, issued.secret_access_key), "rekognition", "us-east-1"
    )
    with mock.patch(
        "botocore.auth.get_current_datetime",
        return_value=at or datetime.now(UTC).replace(tzinfo=None),
    ):
        signer.add_auth(request)
    return dict(request.headers.items())


# Slow: real models on real images, one server for the module.


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    settings = make_settings(tmp_path_factory.mktemp("rekognition") / "data", preload=False)
    server = ThreadedServer(create_app(settings))
    keys = key_store(settings)
    admin = credentials_for(settings, keys, "ops", is_admin=True)
    try:
        yield server, settings, keys, rekognition(server.url, admin)
    finally:
        server.stop()


def jpeg_bytes(image: Image.Image) -> bytes:
    return encode(image, "JPEG", quality=95)


@pytest.mark.slow
def test_detections_answer_what_v2_answers(served, astronaut, coffee) -> None:
    client = served[3]
    astronaut_jpeg, coffee_jpeg = jpeg_bytes(astronaut), jpeg_bytes(coffee)
    labels = client.detect_labels(Image={"Bytes": coffee_jpeg}, MaxLabels=10, MinConfidence=50)
    names = [label["Name"] for label in labels["Labels"]]
    assert "Espresso" in names and "Cup" in names
    cup = next(label for label in labels["Labels"] if label["Name"] == "Cup")
    assert cup["Instances"] and 0 < cup["Instances"][0]["BoundingBox"]["Width"] <= 1
    espresso = next(label for label in labels["Labels"] if label["Name"] == "Espresso")
    assert espresso["Instances"] == [] and {"Name": "Beverage"} in espresso["Parents"]
    assert "Beverage" in names  # parents are labels too, as Rekognition answers them
    assert all(label["Confidence"] >= 50 for label in labels["Labels"])
    assert labels["LabelModelVersion"]

    faces = client.detect_faces(Image={"Bytes": astronaut_jpeg}, Attributes=["ALL"])
    (face,) = faces["FaceDetails"]
    assert face["Confidence"] > 99
    assert [p["Type"] for p in face["Landmarks"]] == [
        "eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight",
    ]
    box = face["BoundingBox"]
    eye = face["Landmarks"][0]
    assert box["Left"] < eye["X"] < box["Left"] + box["Width"]
    assert "AgeRange" not in face and "Emotions" not in face  # never invented

    page = render_pages()[0]
    text = client.detect_text(Image={"Bytes": page.image})
    lines = [d for d in text["TextDetections"] if d["Type"] == "LINE"]
    words = [d for d in text["TextDetections"] if d["Type"] == "WORD"]
    assert [line["DetectedText"] for line in lines] == list(page.lines)
    assert " ".join(w["DetectedText"] for w in words) == " ".join(
        " ".join(line.split()) for line in page.lines
    )
    ids = {line["Id"] for line in lines}
    assert all(word["ParentId"] in ids for word in words)
    assert all(len(d["Geometry"]["Polygon"]) == 4 for d in text["TextDetections"])

    before = nsfw_requests(served[0].url)
    moderation = client.detect_moderation_labels(
        Image={"Bytes": astronaut_jpeg}, MinConfidence=0
    )
    (label,) = moderation["ModerationLabels"]
    assert label["Name"] == "Explicit" and label["ParentName"] == "" and label["Confidence"] < 50
    none = client.detect_moderation_labels(Image={"Bytes": astronaut_jpeg})
    assert none["ModerationLabels"] == []
    # Counted in the request metrics like every dialect's requests, by type.
    assert nsfw_requests(served[0].url) == before + 2


def nsfw_requests(url: str) -> float:
    """The answered nsfw requests the server's /metrics counts."""
    scraped = requests.get(url + "/metrics", timeout=10).text
    return sum(
        float(line.split()[-1])
        for line in scraped.splitlines()
        if line.startswith("imagerecognize_requests_total")
        and 'type="nsfw"' in line
        and 'status="200"' in line
    )


@pytest.mark.slow
def test_the_same_faces_boxes_and_words_as_v2(served, astronaut, coffee) -> None:
    server, _, keys, client = served
    v2key = keys.create("v2-compare")

    def v2(type_: str, data: bytes, **fields: str) -> dict:
        answer = requests.post(
            server.url + "/api/v2/",
            data={"apikey": v2key, "type": type_, **fields},
            files={"file": data},
            timeout=120,
        )
        return answer.json()["data"]

    def pixels(box: dict, width: int, height: int) -> tuple[float, ...]:
        return (
            box["Left"] * width, box["Top"] * height, box["Width"] * width, box["Height"] * height
        )

    def v2_box(box: dict) -> tuple[float, ...]:
        return (box["left"], box["top"], box["width"], box["height"])

    data = jpeg_bytes(astronaut)
    width, height = astronaut.size
    (ours,) = v2("detect_faces", data)["objects"]
    (face,) = client.detect_faces(Image={"Bytes": data})["FaceDetails"]
    assert pixels(face["BoundingBox"], width, height) == pytest.approx(v2_box(ours["box"]))
    assert face["Confidence"] == pytest.approx(ours["confidence"])

    data = jpeg_bytes(coffee)
    width, height = coffee.size
    objects = v2("objects", data, max_labels="10", min_confidence="55")["objects"]
    answered = client.detect_labels(Image={"Bytes": data})["Labels"]
    labels = {label["Name"]: label for label in answered}
    for obj in objects:
        label = labels[obj["name"].title()]
        assert label["Confidence"] == pytest.approx(obj["confidence"])
        assert [pixels(i["BoundingBox"], width, height) for i in label["Instances"]] == [
            pytest.approx(v2_box(i["box"])) for i in obj["instances"]
        ]

    page = render_pages()[1]
    width, height = Image.open(io.BytesIO(page.image)).size
    lines = v2("detect_text", page.image)["objects"]
    found = client.detect_text(Image={"Bytes": page.image})["TextDetections"]
    ours_lines = [d for d in found if d["Type"] == "LINE"]
    assert [d["DetectedText"] for d in ours_lines] == [line["text"] for line in lines]
    for detection, line in zip(ours_lines, lines, strict=True):
        box = detection["Geometry"]["BoundingBox"]
        assert pixels(box, width, height) == pytest.approx(v2_box(line["box"]))


@pytest.mark.slow
def test_collection_round_trip(served, astronaut, grace_hopper) -> None:
    client = served[3]
    astronaut_jpeg = jpeg_bytes(astronaut)
    mirror = jpeg_bytes(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    hopper = jpeg_bytes(grace_hopper)

    created = client.create_collection(CollectionId="crew")
    assert created["StatusCode"] == 200 and created["CollectionArn"].endswith("collection/crew")
    with pytest.raises(client.exceptions.ResourceAlreadyExistsException):
        client.create_collection(CollectionId="crew")
    assert "crew" in client.list_collections()["CollectionIds"]

    indexed = client.index_faces(
        CollectionId="crew", Image={"Bytes": astronaut_jpeg}, ExternalImageId="eileen",
        MaxFaces=1, QualityFilter="AUTO",
    )
    (record,) = indexed["FaceRecords"]
    face_id = record["Face"]["FaceId"]
    assert re.match(FACE_ID_PATTERN, face_id)
    assert re.match(FACE_ID_PATTERN, record["Face"]["ImageId"])
    assert record["Face"]["ExternalImageId"] == "eileen"
    second = client.index_faces(
        CollectionId="crew", Image={"Bytes": hopper}, ExternalImageId="grace"
    )["FaceRecords"][0]["Face"]["FaceId"]
    described = client.describe_collection(CollectionId="crew")
    assert described["FaceCount"] == 2 and isinstance(described["CreationTimestamp"], datetime)

    # Paged with NextToken, by boto3's own paginator.
    pages = list(client.get_paginator("list_faces").paginate(
        CollectionId="crew", PaginationConfig={"PageSize": 1}
    ))
    assert [f["FaceId"] for p in pages for f in p["Faces"]] == [face_id, second]
    only = client.list_faces(CollectionId="crew", FaceIds=[second.upper()], MaxResults=0)
    assert [f["FaceId"] for f in only["Faces"]] == [second] and "NextToken" not in only

    # Her mirror image matches her with AWS's default threshold, and not Grace Hopper.
    found = client.search_faces_by_image(CollectionId="crew", Image={"Bytes": mirror})
    assert [m["Face"]["FaceId"] for m in found["FaceMatches"]] == [face_id]
    assert found["FaceMatches"][0]["Similarity"] > 80
    compared = client.compare_faces(
        SourceImage={"Bytes": astronaut_jpeg}, TargetImage={"Bytes": mirror}
    )
    assert len(compared["FaceMatches"]) == 1 and compared["FaceMatches"][0]["Similarity"] > 80
    strangers = client.compare_faces(
        SourceImage={"Bytes": astronaut_jpeg}, TargetImage={"Bytes": hopper}
    )
    assert strangers["FaceMatches"] == [] and len(strangers["UnmatchedFaces"]) == 1
    by_id = client.search_faces(CollectionId="crew", FaceId=face_id, FaceMatchThreshold=0)
    assert [m["Face"]["FaceId"] for m in by_id["FaceMatches"]] == [second]
    assert by_id["FaceMatches"][0]["Similarity"] < 80

    never = str(uuid.uuid4())
    deleted = client.delete_faces(CollectionId="crew", FaceIds=[face_id, never])
    assert deleted["DeletedFaces"] == [face_id]
    assert deleted["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["FACE_NOT_FOUND"]
    assert client.delete_faces(CollectionId="crew", FaceIds=[face_id])["DeletedFaces"] == []
    client.delete_collection(CollectionId="crew")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_collection(CollectionId="crew")

    # The default collection is the celebrities' gallery.
    client.index_faces(
        CollectionId="default", Image={"Bytes": hopper}, ExternalImageId="Grace_Hopper"
    )
    celebrities = client.recognize_celebrities(Image={"Bytes": hopper})
    (known,) = celebrities["CelebrityFaces"]
    assert known["Name"] == "Grace_Hopper" and known["MatchConfidence"] > 80
    assert known["Face"]["Confidence"] > 99  # the detector's, as Rekognition gives it
    stranger = client.recognize_celebrities(Image={"Bytes": astronaut_jpeg})
    assert stranger["CelebrityFaces"] == [] and len(stranger["UnrecognizedFaces"]) == 1
    assert celebrities["UnrecognizedFaces"] == []


@pytest.mark.slow
def test_quota_one_unit_per_image_operation(served, coffee) -> None:
    server, settings, keys, _ = served
    client = rekognition(server.url, credentials_for(settings, keys, "two-units", quota=2))
    image = {"Bytes": jpeg_bytes(coffee)}
    client.detect_labels(Image=image)
    client.detect_moderation_labels(Image=image)
    with pytest.raises(client.exceptions.ServiceQuotaExceededException):
        client.detect_labels(Image=image)
    assert keys.find("two-units").quota == 0


@pytest.mark.slow
def test_a_full_queue_is_throttled_and_boto3_retries(
    tmp_path: Path, astronaut: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(
        tmp_path / "data", preload=False, queue_size=1, max_batch_size=1, max_wait_ms=0
    )
    slow_predict = MtcnnFaceDetector.predict
    gate = threading.Event()

    def slow(self, batch):
        gate.wait(5)
        return slow_predict(self, batch)

    monkeypatch.setattr(MtcnnFaceDetector, "predict", slow)
    server = ThreadedServer(create_app(settings))
    try:
        keys = key_store(settings)
        issued = credentials_for(settings, keys, "busy", quota=100)
        rounds = iter(range(2))

        def detect(client, data: bytes):
            try:
                return client.detect_faces(Image={"Bytes": data})
            except ClientError as exc:
                return exc

        def all_at_once(retries: int) -> list:
            """Five images sent at once while the model is held back, then let go; images
            not sent before (an identical one would be answered from its stored result)."""
            start = 96 + 64 * next(rounds)
            images = [jpeg_bytes(astronaut.resize((start + 8 * i, 96))) for i in range(5)]
            # Clients made first: making one takes longer than the model is held.
            clients = [rekognition(server.url, issued, retries=retries) for _ in images]
            gate.clear()
            with ThreadPoolExecutor(len(images)) as pool:
                futures = [pool.submit(detect, c, d) for c, d in zip(clients, images, strict=True)]
                time.sleep(1.5)
                gate.set()
                return [f.result() for f in futures]

        # Without retries, those that find the queue full are refused: ThrottlingException.
        refused = all_at_once(retries=1)
        throttled = [r for r in refused if isinstance(r, ClientError)]
        assert throttled and all(code_of(r) == "ThrottlingException" for r in throttled)
        assert all(r.response["ResponseMetadata"]["HTTPStatusCode"] == 400 for r in throttled)
        # With boto3's standard retries, it backs off by itself and gets every answer.
        answered = all_at_once(retries=5)
        assert all(isinstance(a, dict) for a in answered), answered
        assert any(a["ResponseMetadata"]["RetryAttempts"] > 0 for a in answered)
        answers = len(refused) - len(throttled) + len(answered)
        assert keys.find("busy").quota == 100 - answers
    finally:
        server.stop()


@pytest.mark.slow
def test_s3_images_from_a_configured_store(tmp_path: Path, coffee: Image.Image) -> None:
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{moto._port}"
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="minio", aws_secret_access_key="minio-secret",
        )
        s3.create_bucket(Bucket="photos")
        s3.put_object(Bucket="photos", Key="coffee.jpg", Body=jpeg_bytes(coffee))
        s3.put_object(Bucket="photos", Key="big.jpg", Body=b"\xff" * (5 * 1024 * 1024 + 1))
        settings = make_settings(
            tmp_path / "data", preload=False, s3_endpoint_url=endpoint,
            s3_access_key_id="minio", s3_secret_access_key="minio-secret",
        )
        server = ThreadedServer(create_app(settings))
        try:
            keys = key_store(settings)
            client = rekognition(server.url, credentials_for(settings, keys, "s3"))
            labels = client.detect_labels(
                Image={"S3Object": {"Bucket": "photos", "Name": "coffee.jpg"}}, MaxLabels=5
            )
            assert "Espresso" in [label["Name"] for label in labels["Labels"]]
            with pytest.raises(client.exceptions.InvalidS3ObjectException):
                client.detect_labels(Image={"S3Object": {"Bucket": "photos", "Name": "none.jpg"}})
            with pytest.raises(client.exceptions.ImageTooLargeException):
                client.detect_labels(Image={"S3Object": {"Bucket": "photos", "Name": "big.jpg"}})
        finally:
            server.stop()
    finally:
        moto.stop()


def test_json_body_limits(quiet) -> None:
    server, settings, keys = quiet
    issued = credentials_for(settings, keys, "limits")
    nested = b"[" * 100_000 + b"]" * 100_000
    answer = requests.post(
        server.url + "/", data=nested,
        headers=signed_headers(server.url, issued, "DetectLabels", nested),
    )
    assert answer.status_code == 400 and answer.json()["__type"] == "SerializationException"
    body = json.dumps({"Image": {"Bytes": base64.b64encode(b"not an image").decode()}}).encode()
    answer = requests.post(
        server.url + "/",
        data=body,
        headers=signed_headers(server.url, issued, "DetectFaces", body),  # a light model
    )
    assert answer.json()["__type"] == "InvalidImageFormatException"
    assert answer.headers["content-type"] == "application/x-amz-json-1.1"
    assert answer.headers["x-amzn-RequestId"] == answer.headers["x-request-id"]


@pytest.mark.slow
def test_imagerecognize_serve_with_only_the_sdk_environment(
    tmp_path: Path, astronaut: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`imagerecognize serve`, and a client configured by the environment alone (no code
    names the endpoint), as a Rekognition user moving here would."""
    settings = make_settings(tmp_path / "data")
    issued = credentials_for(settings, key_store(settings), "moved", quota=10)
    server = LiveServer(settings.data_dir)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", f"http://127.0.0.1:{server.port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", issued.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", issued.secret_access_key)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")  # boto3 reads this one
        client = boto3.client("rekognition")
        faces = client.detect_faces(Image={"Bytes": jpeg_bytes(astronaut)})["FaceDetails"]
        assert len(faces) == 1 and faces[0]["Confidence"] > 99
    finally:
        server.stop()


def test_malformed_members_are_invalid_parameters(quiet) -> None:
    """Inputs boto3 would not send but another client might: each a clear error naming the
    member, nothing charged, never a 500."""
    server, settings, keys = quiet
    issued = credentials_for(settings, keys, "odd", quota=5, is_admin=True)
    cases = [
        ("DetectLabels", {"Image": {"Bytes": "aGVsbG8="}, "MinConfidence": "50"}, "MinConfidence"),
        ("DetectLabels", {"Image": [1, 2]}, "Image"),
        ("DetectLabels", {"Image": {"Bytes": "not base64!"}}, "Image.Bytes"),
        ("DetectLabels", {"Image": {"Bytes": "aGVsbG8=", "S3Object": {}}}, "Image"),
        ("DetectLabels", {"Image": {"Bytes": "aGVsbG8="}, "MaxLabels": True}, "MaxLabels"),
        ("DetectFaces", {}, "Image"),
        ("DetectFaces", {"Image": {"Bytes": "aGVsbG8="}, "Attributes": ["AGE"]}, "Attributes"),
        ("CreateCollection", {"CollectionId": "no spaces"}, "CollectionId"),
        ("ListFaces", {"CollectionId": "default", "NextToken": "zz"}, "pagination"),
        ("DeleteFaces", {"CollectionId": "default", "FaceIds": []}, "FaceIds"),
        ("SearchFaces", {"CollectionId": "default", "FaceId": "../x"}, "FaceId"),
        ("DetectText", {"Image": {"Bytes": "aGVsbG8="}, "Filters": []}, "Filters"),
    ]
    for operation, document, named in cases:
        body = json.dumps(document).encode()
        answer = requests.post(
            server.url + "/",
            data=body,
            headers=signed_headers(server.url, issued, operation, body),
        )
        error = answer.json()
        assert answer.status_code == 400, (operation, document, error)
        assert error["__type"] in (
            "InvalidParameterException", "InvalidPaginationTokenException"
        ), error
        assert named.lower() in error["message"].lower(), (named, error)
    assert keys.find("odd").quota == 5


def test_the_operators_upload_limit_holds_too(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", preload=False, max_upload_bytes=1000)
    server = ThreadedServer(create_app(settings))
    try:
        client = rekognition(server.url, credentials_for(settings, key_store(settings), "small"))
        with pytest.raises(client.exceptions.ImageTooLargeException):
            client.detect_faces(Image={"Bytes": b"\xff" * 1001})
    finally:
        server.stop()
