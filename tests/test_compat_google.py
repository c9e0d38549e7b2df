"""Google Cloud Vision's `images:annotate` as its official Python client (google-cloud-vision)
calls it, over REST (`transport="rest"`, `api_key`, `api_endpoint` pointed here) and over gRPC
(plaintext channel), and as Google's curl examples write it; compared with what /api/v2/
answers for the same images, on real models and real photos."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import uvicorn
from fastapi.testclient import TestClient
from google.api_core import exceptions as google_exceptions
from google.cloud import vision
from PIL import Image

from server.http.app import create_app
from server.http.google import annotations, wire
from server.http.google.image_uri import ImageFetcher, ImageUriError
from server.settings import Settings
from server.store.keys import KeyStore
from tests.conftest import encode, free_port, key_store, make_settings

ANNOTATE = "/v1/images:annotate"


def content(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- fast: the request read, the answers written, the errors; no model ---------------------


def test_features_as_names_and_numbers() -> None:
    body = {
        "requests": [
            {
                "image": {"content": content(b"abc")},
                "features": [
                    {"type": "LABEL_DETECTION", "maxResults": 3},
                    {"type": 19},
                    {"type": "LOGO_DETECTION"},  # not served: answers nothing
                    {"type": 1, "maxResults": "5"},
                ],
            }
        ]
    }
    (request,) = wire.batch_request(body)
    assert request.image.content == b"abc"
    assert request.features == {
        wire.FeatureType.LABEL_DETECTION: 3,
        wire.FeatureType.OBJECT_LOCALIZATION: wire.DEFAULT_MAX_RESULTS,
        wire.FeatureType.FACE_DETECTION: 5,
    }
    assert set(request.types) == {"objects", "detect_faces"}
    for bad in ({"type": "LABELS"}, {"type": 99}, {"type": True}, {"type": 4, "maxResults": 1.5}):
        with pytest.raises(wire.RequestError, match="features"):
            wire.batch_request({"requests": [{"image": {}, "features": [bad]}]})
    with pytest.raises(wire.RequestError, match="at most 16"):
        wire.batch_request({"requests": [{}] * 17})
    with pytest.raises(wire.RequestError, match="No requests"):
        wire.batch_request({"requests": []})
    with pytest.raises(wire.RequestError, match="Base64"):
        wire.batch_request({"requests": [{"image": {"content": "%%%"}}]})


def test_text_lines_become_words_and_symbols() -> None:
    line = {
        "text": "ab cd",
        "confidence": 90.0,
        "box": {"left": 10, "top": 20, "width": 50, "height": 10},
        "polygon": [[10, 20], [60, 20], [60, 30], [10, 30]],
    }
    data = {"objects": [line], "image": {"width": 100, "height": 50}}
    words, full = annotations.text(data)
    assert [w["description"] for w in words] == ["ab cd\n", "ab", "cd"]
    # Each word is its share of the line by characters: "ab" the first 2/5, "cd" the last.
    assert words[1]["boundingPoly"]["vertices"][:2] == [{"x": 10, "y": 20}, {"x": 30, "y": 20}]
    assert words[2]["boundingPoly"]["vertices"][:2] == [{"x": 40, "y": 20}, {"x": 60, "y": 20}]
    assert full is not None and full["text"] == "ab cd\n"
    (page,) = full["pages"]
    symbols = [s for w in page["blocks"][0]["paragraphs"][0]["words"] for s in w["symbols"]]
    assert "".join(s["text"] for s in symbols) == "abcd"
    assert symbols[1]["property"]["detectedBreak"]["type"] == "SPACE"
    assert symbols[3]["property"]["detectedBreak"]["type"] == "EOL_SURE_SPACE"


def test_nsfw_score_as_likelihoods() -> None:
    def safe(score: float) -> tuple[str, str]:
        answer = annotations.safe_search({"objects": [{"name": "nsfw", "confidence": score}]})
        assert answer["violence"] == answer["medical"] == answer["spoof"] == "UNKNOWN"
        return answer["adult"], answer["racy"]

    assert safe(2.0) == ("VERY_UNLIKELY", "VERY_UNLIKELY")
    assert safe(15.0) == ("VERY_UNLIKELY", "UNLIKELY")
    assert safe(50.0) == ("POSSIBLE", "LIKELY")
    assert safe(95.0) == ("VERY_LIKELY", "VERY_LIKELY")


@pytest.fixture
def key_with_quota(keys: KeyStore) -> str:
    return keys.create("google", quota=10)


def test_errors_in_googles_shape(client: TestClient, key_with_quota: str) -> None:
    image = {"requests": [{"image": {"content": content(b"x")}, "features": [{"type": 4}]}]}
    for headers, query in (({}, ""), ({"x-goog-api-key": "wrong"}, ""), ({}, "?key=wrong")):
        response = client.post(ANNOTATE + query, json=image, headers=headers)
        error = response.json()["error"]
        assert response.status_code == 403 and error["status"] == "PERMISSION_DENIED", error
        assert error["details"][0]["reason"] == "API_KEY_INVALID"
    for body in (b"{not json", b"[1]", b'{"requests": []}'):
        response = client.post(
            f"{ANNOTATE}?key={key_with_quota}", content=body, headers={"Content-Type": "x/y"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    deep = b'{"requests": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    response = client.post(f"{ANNOTATE}?key={key_with_quota}", content=deep)
    assert response.status_code == 400
    for path, status in (
        ("/v1/files:annotate", 501),
        ("/v1/images:asyncBatchAnnotate", 501),
        ("/v1/projects/p/files:asyncBatchAnnotate", 501),
        ("/v1/operations/123", 404),
        ("/v1/nothing", 404),
        ("/v1p1beta1/files:annotate", 501),
    ):
        response = client.post(path, json={})
        assert response.status_code == status, path
        assert response.json()["error"]["code"] == status
    # DeepStack keeps its own prefixes and envelope.
    response = client.post("/v1/vision/nothing")
    assert response.status_code == 404 and response.json()["success"] is False


def test_sources_we_do_not_read_are_one_images_error(
    client: TestClient, key_with_quota: str, keys: KeyStore
) -> None:
    body = {
        "requests": [
            {"image": {"source": {"gcsImageUri": "gs://b/o.jpg"}}, "features": [{"type": 4}]},
            {"image": {"source": {"imageUri": "http://127.0.0.1/a"}}, "features": [{"type": 1}]},
            {"image": {}, "features": [{"type": 6}]},
            {"image": {"content": content(b"x")}, "features": [{"type": "LOGO_DETECTION"}]},
            {
                "image": {"source": {"imageUri": "gs://cloud-samples-data/vision/face.jpg"}},
                "features": [{"type": "FACE_DETECTION"}],
            },
        ]
    }
    response = client.post(ANNOTATE, json=body, headers={"x-goog-api-key": key_with_quota})
    assert response.status_code == 200, response.text
    gcs, uri, empty, logo, gs_uri = response.json()["responses"]
    assert gcs["error"]["code"] == 3 and "gcsImageUri" in gcs["error"]["message"]
    assert gs_uri == gcs  # a gs:// imageUri, as Google's own examples send
    assert uri["error"]["code"] == 7 and "imageUri" in uri["error"]["message"]
    assert empty["error"]["code"] == 3
    assert logo == {}
    assert keys.find("google").quota == 10  # nothing answered, nothing charged


class _Images(BaseHTTPRequestHandler):
    """A web server with one image and a redirect to another host name."""

    image = b""

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_port}/image")
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.image if self.path == "/image" else b"x" * 5000)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_server(astronaut: Image.Image) -> Iterator[str]:
    _Images.image = encode(astronaut)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_image_uri_only_where_the_operator_allows(image_server: str) -> None:
    import asyncio

    async def fetch(allow: list[str], url: str, limit: int = 10**6) -> bytes | str:
        try:
            return await ImageFetcher(allow, limit, 5.0).fetch(url)
        except ImageUriError as exc:
            return str(exc)

    def run(allow: list[str], url: str, limit: int = 10**6) -> bytes | str:
        return asyncio.run(fetch(allow, url, limit))

    assert run(["127.0.0.1"], f"{image_server}/image") == _Images.image
    assert run([f"{image_server}/im"], f"{image_server}/image") == _Images.image
    assert "does not fetch imageUri" in run([], f"{image_server}/image")
    # Any host, but not a loopback one, unless named.
    assert "private, loopback" in run(["*"], f"{image_server}/image")
    # A redirect to a host that is not listed; then listed.
    assert "does not fetch images from that URL" in run(["127.0.0.1"], f"{image_server}/redirect")
    assert run(["127.0.0.1", "localhost"], f"{image_server}/redirect") == _Images.image
    assert "larger than" in run(["127.0.0.1"], f"{image_server}/big", limit=1000)
    assert "http or https" in run(["*"], "file:///etc/passwd")
    assert "user name" in run(["127.0.0.1"], image_server.replace("//", "//me@") + "/image")
    assert "does not fetch images" in run(["*.example.com"], "http://example.com.evil.test/")
    assert ". or .." in run([f"{image_server}/public/"], f"{image_server}/public/../image")


# --- slow: the official client against a live server, real models ---------------------------


class ThreadServer:
    """The app under uvicorn in a thread of this process (its gRPC service too)."""

    def __init__(self, settings: Settings):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def rest_client(server: ThreadServer, key: str) -> vision.ImageAnnotatorClient:
    return vision.ImageAnnotatorClient(
        transport="rest", client_options={"api_endpoint": server.url, "api_key": key}
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadServer, str, int]]:
    grpc_port = free_port()
    settings = make_settings(tmp_path_factory.mktemp("google") / "data", google_grpc_port=grpc_port)
    key = key_store(settings).create("client", quota=1000)
    server = ThreadServer(settings)
    yield server, key, grpc_port
    server.stop()


def v2(server: ThreadServer, key: str, type_: str, data: bytes, **fields: object) -> dict:
    response = requests.post(
        f"{server.url}/api/v2/",
        data={"apikey": key, "type": type_, **fields},
        files={"file": ("image", data)},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def quota(server: ThreadServer, key: str) -> int:
    response = requests.get(f"{server.url}/api/v2/", params={"apikey": key, "type": "cache"})
    return response.json()["data"]["quota"]


def text_page() -> tuple[bytes, list[str]]:
    from scripts.rendered_text import render_pages

    page = render_pages()[0]
    return page.image, page.lines


@pytest.mark.slow
def test_every_feature_with_the_rest_client(
    served: tuple[ThreadServer, str, int], astronaut: Image.Image, coffee: Image.Image
) -> None:
    server, key, _ = served
    client = rest_client(server, key)
    photo = encode(astronaut)
    image = vision.Image(content=photo)

    faces = client.face_detection(image=image).face_annotations
    ours = v2(server, key, "detect_faces", photo)["objects"]
    assert len(faces) == len(ours) == 1
    box = ours[0]["box"]
    vertices = [(v.x, v.y) for v in faces[0].bounding_poly.vertices]
    assert vertices[0] == (box["left"], box["top"])
    assert vertices[2] == (box["left"] + box["width"], box["top"] + box["height"])
    assert faces[0].fd_bounding_poly == faces[0].bounding_poly
    landmarks = {
        vision.FaceAnnotation.Landmark.Type(m.type_).name: m.position for m in faces[0].landmarks
    }
    assert set(landmarks) == {"LEFT_EYE", "RIGHT_EYE", "NOSE_TIP", "MOUTH_LEFT", "MOUTH_RIGHT"}
    assert landmarks["LEFT_EYE"].x < landmarks["RIGHT_EYE"].x
    assert landmarks["LEFT_EYE"].x == pytest.approx(ours[0]["landmarks"]["left_eye"]["x"])
    assert faces[0].detection_confidence == pytest.approx(ours[0]["confidence"] / 100, abs=1e-3)
    assert faces[0].joy_likelihood == vision.Likelihood.UNKNOWN

    cup = encode(coffee)
    labels = client.label_detection(image=vision.Image(content=cup), max_results=3)
    objects = v2(server, key, "objects", cup, max_labels=100, min_confidence=50)
    names = [label.description for label in labels.label_annotations]
    assert names == [obj["name"] for obj in objects["objects"][:3]]
    assert all(0.5 <= label.score <= 1 for label in labels.label_annotations)

    located = client.object_localization(image=vision.Image(content=cup))
    boxes = [(o["name"], i["box"]) for o in objects["objects"] for i in o["instances"]]
    assert len(located.localized_object_annotations) == len(boxes) >= 1
    width, height = objects["image"]["width"], objects["image"]["height"]
    for found in located.localized_object_annotations:
        corner = found.bounding_poly.normalized_vertices[0]
        assert any(
            name == found.name
            and abs(corner.x * width - b["left"]) <= 1
            and abs(corner.y * height - b["top"]) <= 1
            for name, b in boxes
        ), found

    page, lines = text_page()
    for read in (client.text_detection, client.document_text_detection):
        answer = read(image=vision.Image(content=page))
        lines_v2 = v2(server, key, "detect_text", page)["objects"]
        words = [w.description for w in answer.text_annotations[1:]]
        assert words == " ".join(line["text"] for line in lines_v2).split()
        assert answer.text_annotations[0].description.splitlines() == [
            line["text"] for line in lines_v2
        ]
        assert answer.full_text_annotation.text == answer.text_annotations[0].description
        assert len(answer.full_text_annotation.pages[0].blocks) == len(lines_v2)
        assert lines_v2 and [line["text"] for line in lines_v2] == list(lines)

    safe = client.safe_search_detection(image=image).safe_search_annotation
    score = v2(server, key, "nsfw", photo, nsfw_min_confidence=0)["objects"]
    nsfw = next(o["confidence"] for o in score if o["name"] == "nsfw")
    expected = annotations.likelihood(nsfw, annotations.ADULT_THRESHOLDS)
    assert vision.Likelihood(safe.adult).name == expected
    assert safe.violence == vision.Likelihood.UNKNOWN

    # annotate_image without features sends all twelve: ours answered, the others nothing.
    before = quota(server, key)
    everything = client.annotate_image({"image": {"content": photo}})
    assert everything.face_annotations and everything.label_annotations
    assert everything.safe_search_annotation.adult != vision.Likelihood.UNKNOWN
    assert not everything.logo_annotations and not everything.web_detection.web_entities
    assert quota(server, key) == before - 1  # one image, one unit, five analyses


@pytest.mark.slow
def test_several_features_decode_once_and_answer_as_one_each(
    served: tuple[ThreadServer, str, int], astronaut: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.pipeline import stages

    server, key, _ = served
    client = rest_client(server, key)
    photo = vision.Image(content=encode(astronaut.resize((700, 700))))
    kinds = vision.Feature.Type
    features = [
        kinds.FACE_DETECTION,
        kinds.LABEL_DETECTION,
        kinds.SAFE_SEARCH_DETECTION,
        kinds.TEXT_DETECTION,
        kinds.OBJECT_LOCALIZATION,
    ]
    alone = {
        feature: client.annotate_image({"image": photo, "features": [{"type_": feature}]})
        for feature in features
    }
    decodes = []
    decode = stages.decode_image

    def counted(*args, **kwargs):
        decodes.append(args[2] if len(args) > 2 else kwargs.get("max_side"))
        return decode(*args, **kwargs)

    monkeypatch.setattr(stages, "decode_image", counted)
    together = client.annotate_image(
        {"image": photo, "features": [{"type_": feature} for feature in features]}
    )
    # Once, at the largest side any of the four models reads (the text detector's).
    assert len(decodes) == 1, decodes
    assert together.face_annotations == alone[kinds.FACE_DETECTION].face_annotations
    assert together.label_annotations == alone[kinds.LABEL_DETECTION].label_annotations
    assert together.localized_object_annotations == (
        alone[kinds.OBJECT_LOCALIZATION].localized_object_annotations
    )
    assert together.safe_search_annotation == (
        alone[kinds.SAFE_SEARCH_DETECTION].safe_search_annotation
    )
    assert together.text_annotations == alone[kinds.TEXT_DETECTION].text_annotations


@pytest.mark.slow
def test_curl_request_with_names_and_query_key(
    served: tuple[ThreadServer, str, int], astronaut: Image.Image
) -> None:
    server, key, _ = served
    body = {
        "requests": [
            {
                "image": {"content": content(encode(astronaut))},
                "features": [{"type": "FACE_DETECTION", "maxResults": 1}],
            }
        ]
    }
    response = requests.post(f"{server.url}{ANNOTATE}?key={key}", json=body, timeout=300)
    assert response.status_code == 200, response.text
    (answer,) = response.json()["responses"]
    vertices = answer["faceAnnotations"][0]["boundingPoly"]["vertices"]
    assert all(isinstance(v["x"], int) and isinstance(v["y"], int) for v in vertices)
    assert answer["faceAnnotations"][0]["joyLikelihood"] == "UNKNOWN"


@pytest.mark.slow
def test_batch_with_one_bad_image(
    served: tuple[ThreadServer, str, int], astronaut: Image.Image, coffee: Image.Image
) -> None:
    server, key, _ = served
    client = rest_client(server, key)
    feature = vision.Feature(type_=vision.Feature.Type.FACE_DETECTION)
    images = [encode(astronaut), b"GIF89a not ours", encode(coffee)]
    before = quota(server, key)
    answer = client.batch_annotate_images(
        requests=[
            vision.AnnotateImageRequest(image={"content": d}, features=[feature]) for d in images
        ]
    )
    first, bad, third = answer.responses
    assert len(first.face_annotations) == 1 and not first.error.code
    assert bad.error.code == 3 and "PNG and JPEG" in bad.error.message
    assert not third.face_annotations and not third.error.code
    assert quota(server, key) == before - 2  # the bad image is not charged


@pytest.mark.slow
def test_wrong_key_is_forbidden(served: tuple[ThreadServer, str, int], astronaut) -> None:
    server, _, _ = served
    client = rest_client(server, "not a key")
    with pytest.raises(google_exceptions.Forbidden) as refused:
        client.face_detection(image=vision.Image(content=encode(astronaut)))
    assert refused.value.reason == "API_KEY_INVALID"


@pytest.mark.slow
def test_grpc_transport(served: tuple[ThreadServer, str, int], astronaut: Image.Image) -> None:
    import grpc
    from google.cloud.vision_v1.services.image_annotator.transports import (
        ImageAnnotatorGrpcTransport,
    )

    server, key, grpc_port = served
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    client = vision.ImageAnnotatorClient(transport=ImageAnnotatorGrpcTransport(channel=channel))
    photo = encode(astronaut)
    request = vision.AnnotateImageRequest(
        image={"content": photo},
        features=[
            {"type_": vision.Feature.Type.FACE_DETECTION},
            {"type_": vision.Feature.Type.LABEL_DETECTION, "max_results": 2},
        ],
    )
    answer = client.batch_annotate_images(
        requests=[request], metadata=[("x-goog-api-key", key)]
    ).responses[0]
    rest = rest_client(server, key).batch_annotate_images(requests=[request]).responses[0]
    assert answer.face_annotations == rest.face_annotations
    assert [label.description for label in answer.label_annotations] == [
        label.description for label in rest.label_annotations
    ]
    assert 1 <= len(answer.label_annotations) <= 2
    with pytest.raises(google_exceptions.PermissionDenied):
        client.batch_annotate_images(requests=[request], metadata=[("x-goog-api-key", "no")])
    channel.close()


@pytest.mark.slow
def test_full_queue_is_503_with_retry_after(
    tmp_path: Path, astronaut: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.detect_faces.mtcnn import MtcnnFaceDetector

    settings = make_settings(tmp_path / "data", queue_size=1, max_batch_size=1, max_wait_ms=0)
    key = key_store(settings).create("busy", quota=100)
    slow_predict = MtcnnFaceDetector.predict
    gate = threading.Event()

    def slow(self, batch):
        gate.wait(10)
        return slow_predict(self, batch)

    monkeypatch.setattr(MtcnnFaceDetector, "predict", slow)
    server = ThreadServer(settings)
    try:
        client = rest_client(server, key)
        images = [encode(astronaut.resize((96 + i, 96))) for i in range(6)]

        def detect(data: bytes):
            try:
                return client.face_detection(image=vision.Image(content=data))
            except google_exceptions.GoogleAPICallError as exc:
                return exc

        with ThreadPoolExecutor(len(images)) as pool:
            futures = [pool.submit(detect, data) for data in images]
            time.sleep(2)
            raw = requests.post(
                f"{server.url}{ANNOTATE}",
                headers={"x-goog-api-key": key},
                json={
                    "requests": [
                        {"image": {"content": content(images[0])}, "features": [{"type": 1}]}
                    ]
                },
                timeout=60,
            )
            gate.set()
            outcomes = [f.result() for f in futures]
        refused = [o for o in outcomes if isinstance(o, google_exceptions.ServiceUnavailable)]
        answered = [o for o in outcomes if isinstance(o, vision.AnnotateImageResponse)]
        assert refused and answered and len(refused) + len(answered) == len(images), outcomes
        assert raw.status_code == 503 and raw.headers["retry-after"] == "1"
        assert raw.json()["error"]["status"] == "UNAVAILABLE"
        assert quota(server, key) == 100 - len(answered)
    finally:
        gate.set()
        server.stop()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and its key, as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.mark.slow
def test_grpc_over_tls(tmp_path: Path, astronaut: Image.Image) -> None:
    import grpc
    from google.cloud.vision_v1.services.image_annotator.transports import (
        ImageAnnotatorGrpcTransport,
    )

    cert, key_file = self_signed(tmp_path)
    port = free_port()
    settings = make_settings(
        tmp_path / "data",
        google_grpc_port=port,
        google_grpc_tls_cert=cert,
        google_grpc_tls_key=key_file,
    )
    key = key_store(settings).create("tls")
    server = ThreadServer(settings)
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        channel = grpc.secure_channel(f"localhost:{port}", credentials)
        client = vision.ImageAnnotatorClient(transport=ImageAnnotatorGrpcTransport(channel=channel))
        request = vision.AnnotateImageRequest(
            image={"content": encode(astronaut)},
            features=[{"type_": vision.Feature.Type.FACE_DETECTION}],
        )
        answer = client.batch_annotate_images(
            requests=[request], metadata=[("x-goog-api-key", key)]
        )
        assert len(answer.responses[0].face_annotations) == 1
        # A plaintext client does not get through.
        plain = vision.ImageAnnotatorClient(
            transport=ImageAnnotatorGrpcTransport(
                channel=grpc.insecure_channel(f"localhost:{port}")
            )
        )
        with pytest.raises(google_exceptions.ServiceUnavailable):
            plain.batch_annotate_images(
                requests=[request], metadata=[("x-goog-api-key", key)], retry=None, timeout=10
            )
        channel.close()
    finally:
        server.stop()


@pytest.mark.slow
def test_image_uri_fetched_when_allowed(tmp_path: Path, image_server: str) -> None:
    settings = make_settings(tmp_path / "data", google_image_uri_allow=["127.0.0.1"])
    keys = key_store(settings)
    key = keys.create("uri", quota=5)
    body = {
        "requests": [
            {
                "image": {"source": {"imageUri": f"{image_server}/image"}},
                "features": [{"type": "FACE_DETECTION"}],
            },
            {
                "image": {"source": {"imageUri": f"{image_server}/redirect"}},
                "features": [{"type": "FACE_DETECTION"}],
            },
        ]
    }
    with TestClient(create_app(settings)) as client:
        response = client.post(ANNOTATE, json=body, headers={"x-goog-api-key": key})
    assert response.status_code == 200, response.text
    fetched, redirected = response.json()["responses"]
    assert len(fetched["faceAnnotations"]) == 1
    # localhost is not listed: the redirect to it is refused, that image alone.
    assert redirected["error"]["code"] == 7
    assert keys.find("uri").quota == 4


@pytest.mark.slow
def test_quota_running_out_in_a_batch_fails_the_call_and_charges_nothing(
    tmp_path: Path, astronaut: Image.Image, coffee: Image.Image
) -> None:
    settings = make_settings(tmp_path / "data")
    keys = key_store(settings)
    key = keys.create("short", quota=1)
    feature = [{"type": "FACE_DETECTION"}]
    body = {
        "requests": [
            {"image": {"content": content(encode(photo))}, "features": feature}
            for photo in (astronaut, coffee)
        ]
    }
    with TestClient(create_app(settings)) as client:
        response = client.post(ANNOTATE, json=body, headers={"x-goog-api-key": key})
        assert response.status_code == 429, response.text
        assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert keys.find("short").quota == 1  # the image analysed is given back too
        one = client.post(
            ANNOTATE, json={"requests": body["requests"][:1]}, headers={"x-goog-api-key": key}
        )
        assert one.status_code == 200 and one.json()["responses"][0]["faceAnnotations"]
    assert keys.find("short").quota == 0


def service_account_file(folder: Path, name: str) -> tuple[Path, dict]:
    """A service-account key file as Google issues them, with a key made here."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info = {
        "type": "service_account",
        "project_id": "on-premise",
        "private_key_id": f"{name}-key-id",
        "private_key": private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "client_email": f"{name}@on-premise.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(info))
    return path, info


@pytest.mark.slow
def test_service_account_credentials(tmp_path: Path, astronaut: Image.Image) -> None:
    from google.oauth2 import service_account

    registered, info = service_account_file(tmp_path, "vision")
    _, stranger = service_account_file(tmp_path, "stranger")
    settings = make_settings(
        tmp_path / "data", google_service_accounts={str(registered): "charged"}
    )
    keys = key_store(settings)
    keys.create("charged", quota=10)
    server = ThreadServer(settings)
    photo = vision.Image(content=encode(astronaut))
    try:

        def client(account: dict) -> vision.ImageAnnotatorClient:
            return vision.ImageAnnotatorClient(
                credentials=service_account.Credentials.from_service_account_info(account),
                transport="rest",
                client_options={"api_endpoint": server.url},
            )

        assert len(client(info).face_detection(image=photo).face_annotations) == 1
        assert keys.find("charged").quota == 9
        with pytest.raises(google_exceptions.Forbidden):
            client(stranger).face_detection(image=photo)
    finally:
        server.stop()
