"""Operations: /livez and /readyz, Prometheus metrics at /metrics (one process and several),
the access log (text and JSON, never a key), and the drain on SIGTERM of a live server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from server.http.app import create_app
from server.ops.drain import Drain
from server.ops.health import Readiness
from server.pipeline.analysis import AnalysisPipeline
from server.settings import Settings
from server.store.keys import KeyStore
from tests.conftest import ROOT, encode, free_port, make_settings, post_api

METRIC_NAMES = {
    "imagerecognize_requests": "counter",
    "imagerecognize_request_duration_seconds": "histogram",
    "imagerecognize_queue_wait_seconds": "histogram",
    "imagerecognize_inference_seconds": "histogram",
    "imagerecognize_batch_size": "histogram",
    "imagerecognize_queue_depth": "gauge",
    "imagerecognize_model_loaded": "gauge",
}


def scrape(text: str) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """Metric family name → {(sample name, sorted labels): value}, through the library's
    parser."""
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for sample in family.samples
        }
        families[family.name + ":type"] = family.type  # type: ignore[assignment]
    return families


def sample(
    families: dict, family: str, name: str, **labels: str
) -> float:
    return families.get(family, {}).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def preloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("ops") / "data", preload=True)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def preloaded_key(preloaded: TestClient) -> str:
    return preloaded.app.state.imagerecognize.service.keys.create("ops")


@pytest.mark.slow
def test_readyz_200_when_every_model_is_loaded_and_warmed(preloaded: TestClient) -> None:
    assert preloaded.get("/livez").json() == {"status": "alive"}
    response = preloaded.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready" and body["not_ready"] == [] and body["database"] == "ok"
    assert set(body["models"]) == {"objects", "celebrities", "detect_faces", "detect_text", "nsfw"}
    assert all(m["loaded"] and m["warmed"] for m in body["models"].values())
    # /health answers as before.
    assert preloaded.get("/health").json()["status"] == "ok"


@pytest.mark.slow
def test_metrics_count_real_requests(
    preloaded: TestClient, preloaded_key: str, astronaut: Image.Image
) -> None:
    before = scrape(preloaded.get("/metrics").text)
    image = encode(astronaut.resize((256, 256)))
    fields = {"apikey": preloaded_key, "type": "detect_faces"}
    assert post_api(preloaded, fields, image)["data"]["cached"] is False
    assert post_api(preloaded, fields, image)["data"]["cached"] is True  # stored: no batch
    assert post_api(preloaded, {"apikey": "wrong", "type": "objects"}, image)["status"] == 401
    assert post_api(preloaded, {"apikey": preloaded_key, "type": "colours"}, image)["status"] == 420
    response = preloaded.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = scrape(response.text)

    for name, kind in METRIC_NAMES.items():
        assert after[name + ":type"] == kind, name

    def delta(family: str, name: str, **labels: str) -> float:
        return sample(after, family, name, **labels) - sample(before, family, name, **labels)

    total = "imagerecognize_requests_total"
    assert delta("imagerecognize_requests", total, type="detect_faces", status="200") == 2
    assert delta("imagerecognize_requests", total, type="objects", status="401") == 1
    assert delta("imagerecognize_requests", total, type="unknown", status="420") == 1
    duration = "imagerecognize_request_duration_seconds"
    assert delta(duration, duration + "_count", type="detect_faces") == 2
    assert delta(duration, duration + "_sum", type="detect_faces") > 0
    # One model call for the two requests: the second was answered from the stored result.
    for family in ("imagerecognize_queue_wait_seconds", "imagerecognize_inference_seconds"):
        assert delta(family, family + "_count", model="mtcnn") == 1
    batch = "imagerecognize_batch_size"
    assert delta(batch, batch + "_sum", model="mtcnn") == 1
    assert delta(batch, batch + "_bucket", model="mtcnn", le="1.0") == 1
    depth = "imagerecognize_queue_depth"
    assert sample(after, depth, depth, model="mtcnn") == 0
    loaded = "imagerecognize_model_loaded"
    for model in ("ssd_mobilenet_v2", "dlib_resnet", "mtcnn", "pp_ocrv4", "open_nsfw"):
        assert sample(after, loaded, loaded, model=model, device="cpu") == 1
    # The library's process collectors.
    assert sample(after, "process_resident_memory_bytes", "process_resident_memory_bytes") > 0


@pytest.mark.slow
def test_access_log_line_never_holds_the_key(
    preloaded: TestClient,
    preloaded_key: str,
    astronaut: Image.Image,
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = encode(astronaut.resize((200, 200)))
    with caplog.at_level(logging.DEBUG):
        response = preloaded.post(
            "/api/v2/",
            data={"apikey": preloaded_key, "type": "detect_faces"},
            files={"file": ("f.jpg", image)},
        )
        preloaded.get(f"/api/v2/?apikey={preloaded_key}&type=cache")
        preloaded.get("/api/v2/", params={"apikey": preloaded_key[:-1], "type": "cache"})
    lines = [r for r in caplog.records if r.name == "imagerecognize.access"]
    assert len(lines) == 3
    first = lines[0]
    request_id = response.headers["X-Request-Id"]
    assert first.getMessage().startswith(f"request {request_id} POST /api/v2/ type=detect_faces")
    assert "status=200" in first.getMessage() and "model=mtcnn" in first.getMessage()
    assert first.batch_size == 1 and first.result == "computed" and first.ms > 0  # type: ignore[attr-defined]
    assert lines[1].type == "cache" and lines[2].status == 401  # type: ignore[attr-defined]
    for record in caplog.records:
        if record.name.startswith(("httpx", "httpcore")):
            continue  # the test's own HTTP client
        text = record.getMessage() + json.dumps(record.__dict__, default=str)
        assert preloaded_key not in text and preloaded_key[:-1] not in text


def test_readyz_names_models_not_loaded_and_those_that_failed(
    tmp_path: Path, astronaut: Image.Image
) -> None:
    # Configured, but its weights were never fetched: the load fails.
    settings = make_settings(tmp_path / "data", objects_model="faster_rcnn_resnet50_fpn_v2")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        key = client.app.state.imagerecognize.service.keys.create("k")
        body = post_api(client, {"apikey": key, "type": "objects", "max_labels": "5",
                                 "min_confidence": "50"}, encode(astronaut.resize((64, 64))))
        assert body["status"] == 503
        response = client.get("/readyz")
        assert response.status_code == 503
        ready = response.json()
        assert ready["status"] == "not ready" and ready["database"] == "ok"
        assert ready["models"]["objects"]["loaded"] is False
        assert any(
            p.startswith("objects: model faster_rcnn_resnet50_fpn_v2 failed to load")
            for p in ready["not_ready"]
        )
        assert "detect_faces: model mtcnn not loaded yet" in ready["not_ready"]
        metrics = scrape(client.get("/metrics").text)
        loaded = "imagerecognize_model_loaded"
        model = "faster_rcnn_resnet50_fpn_v2"
        assert sample(metrics, loaded, loaded, model=model, device="cpu") == 0
        assert client.get("/livez").status_code == 200


def test_readiness_reports_an_unreachable_database(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    settings = make_settings(tmp_path / "data")
    engine = create_engine(
        f"postgresql+psycopg://nobody:secret@127.0.0.1:{free_port()}/none",
        connect_args={"connect_timeout": 2},
    )
    pipeline = AnalysisPipeline(settings)
    readiness = Readiness(pipeline, engine, Drain(30))
    try:
        ready, body = asyncio.run(readiness.check())
    finally:
        asyncio.run(pipeline.close())
    assert not ready
    assert body["database"] != "ok" and "secret" not in json.dumps(body)
    assert any(p.startswith("database: OperationalError") for p in body["not_ready"])


def test_metrics_token(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", metrics_token="s3cret-token")
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
        right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert right.status_code == 200 and "imagerecognize_requests" in right.text
        assert client.get("/readyz").status_code == 503  # no preload: models not loaded


class ServeProcess:
    """`imagerecognize serve ARGS` on a free port, its log in a file."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"serve-{self.port}.log"
        environment = {**os.environ, "IMAGERECOGNIZE_DATA_DIR": str(data_dir), **(env or {})}
        environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--port", str(self.port), *args],
                cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
            )

    def wait_for(self, path: str, status: int, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if requests.get(self.base + path, timeout=2).status_code == status:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{path} never answered {status}: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.mark.slow
def test_metrics_summed_over_workers(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "data", "--workers", "2")
    try:
        server.wait_for("/livez", 200)
        time.sleep(2)  # the second worker
        for _ in range(20):
            response = requests.post(
                server.base + "/api/v2/", data={"apikey": "nokey", "type": "nsfw"}, timeout=10
            )
            assert response.status_code == 401
        for _ in range(10):  # whichever worker answers, the sum is the same
            text = requests.get(server.base + "/metrics", timeout=10).text
            families = scrape(text)
            total = "imagerecognize_requests_total"
            count = sample(families, "imagerecognize_requests", total, type="nsfw", status="401")
            assert count == 20
    finally:
        server.stop()
    assert server.process.returncode is not None


def _raw_post(port: int, fields: dict[str, str], image: bytes) -> socket.socket:
    """Sends a whole multipart request and returns the socket, its answer unread."""
    boundary = "----opsdrain"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode() + image + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    head = (
        f"POST /api/v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=300)
    sock.sendall(head + body)
    return sock


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


@pytest.mark.slow
def test_sigterm_drains_requests_in_flight(
    tmp_path: Path, settings: Settings, keys: KeyStore, astronaut: Image.Image
) -> None:
    key = keys.create("drain")
    # One image per model call, one decoding thread: eight large images keep the server busy
    # for several seconds (real settings, real model).
    server = ServeProcess(
        settings.data_dir,
        env={
            "IMAGERECOGNIZE_PRELOAD": "true",
            "IMAGERECOGNIZE_MAX_BATCH_SIZE": "1",
            "IMAGERECOGNIZE_DECODE_THREADS": "1",
            # One model call at a time, so that seven wait in the queue.
            "IMAGERECOGNIZE_TORCH_CALLS": "1",
            "IMAGERECOGNIZE_SHUTDOWN_GRACE_S": "240",
            "IMAGERECOGNIZE_LOG_FORMAT": "json",
        },
    )
    try:
        server.wait_for("/readyz", 200)
        big = astronaut.resize((1280, 1280))
        images = [encode(big.rotate(5 * i), quality=92) for i in range(8)]
        sockets = [
            _raw_post(server.port, {"apikey": key, "type": "detect_faces"}, image)
            for image in images
        ]
        # Until the server holds all eight: seven queued behind the one being computed.
        depth = "imagerecognize_queue_depth"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            families = scrape(requests.get(server.base + "/metrics", timeout=10).text)
            if sample(families, depth, depth, model="mtcnn") >= 7:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the eight requests never queued up together")
        answered, _, _ = select.select(sockets, [], [], 0)
        assert not answered, "a request was answered before SIGTERM: not in flight"
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        ready = requests.get(server.base + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["draining"] is True
        assert requests.get(server.base + "/livez", timeout=10).status_code == 200
        refused = requests.post(
            server.base + "/api/v2/", data={"apikey": key, "type": "nsfw"}, timeout=10
        )
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"

        answers = [_read_answer(sock) for sock in sockets]
        last_answer = time.monotonic()
        assert [status for status, _, _ in answers] == [200] * 8
        assert all(body["data"]["objects"] for _, _, body in answers)  # her face, each time
        server.process.wait(timeout=30)
        exited = time.monotonic()
    finally:
        server.stop()
    assert exited - last_answer < 10, "the process must exit promptly once drained"
    assert exited - signalled < 240

    # The JSON log: one line per request, with the ids the answers carried, never the key.
    log = server.log.read_text()
    assert key not in log
    access = [
        json.loads(line) for line in log.splitlines()
        if line.startswith("{") and json.loads(line)["logger"] == "imagerecognize.access"
    ]
    by_id = {line["request_id"]: line for line in access}
    for _, headers, _ in answers:
        line = by_id[headers["x-request-id"]]
        assert line["status"] == 200 and line["type"] == "detect_faces"
        assert line["model"] == "mtcnn" and line["batch_size"] == 1
        assert line["result"] == "computed" and line["ms"] > 0 and line["level"] == "INFO"
    assert by_id[refused.headers["X-Request-Id"]]["status"] == 503
