"""Against a live `imagerecognize serve` process: the original documentation's client code,
atomic quota under concurrency (one and two server processes), and streaming size limits."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image

from server.settings import Settings
from server.store.keys import KeyStore
from tests.conftest import LiveServer, encode

pytestmark = pytest.mark.slow  # real models or live servers

MB = 1024 * 1024


@pytest.fixture
def image_jpg(tmp_path: Path, coffee: Image.Image) -> Path:
    path = tmp_path / "image.jpg"
    path.write_bytes(encode(coffee, quality=95))
    return path


def test_original_python_example(
    live_server: LiveServer, apikey: str, image_jpg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(image_jpg.parent)
    API_KEY = apikey  # noqa: N806 - the documentation's own name
    API_ENDPOINT = live_server.url  # noqa: N806
    # fmt: off
    # --- the documentation's example, verbatim but for the URL ---
    with open('image.jpg', 'rb') as f1:
        f = {'file': f1.read()}

    d = {'apikey': API_KEY,
         'type': 'objects',
         'max_labels': 10,
         'min_confidence': 80}

    r = requests.post(url=API_ENDPOINT, data=d, files=f)
    # --- end of the example ---
    # fmt: on
    body = r.json()
    assert r.status_code == body["status"] == 200
    labels = body["data"]["objects"]
    assert 1 <= len(labels) <= 10 and all(label["confidence"] >= 80 for label in labels)
    assert labels[0]["name"] == "cup" and labels[0]["instances"]
    assert body["data"]["quota"] is None and body["data"]["type"] == "objects"


def _hammer(urls: list[str], key: str, image: bytes, total: int) -> list[int]:
    def one(index: int) -> int:
        response = requests.post(
            urls[index % len(urls)],
            data={"apikey": key, "type": "detect_faces"},
            files={"file": image},
            timeout=120,
        )
        assert response.status_code == response.json()["status"]
        return response.status_code

    with ThreadPoolExecutor(max_workers=total) as pool:
        return list(pool.map(one, range(total)))


def test_quota_is_atomic_under_concurrency(
    live_server: LiveServer, keys: KeyStore, astronaut: Image.Image
) -> None:
    key = keys.create("ten", quota=10)
    statuses = _hammer([live_server.url], key, encode(astronaut.resize((96, 96))), 100)
    assert statuses.count(200) == 10 and statuses.count(402) == 90
    assert keys.find("ten").quota == 0


def test_quota_is_atomic_across_two_server_processes(
    settings: Settings, keys: KeyStore, astronaut: Image.Image
) -> None:
    key = keys.create("ten-shared", quota=10)
    first = LiveServer(settings.data_dir)
    second = LiveServer(settings.data_dir)
    try:
        statuses = _hammer([first.url, second.url], key, encode(astronaut.resize((80, 80))), 100)
    finally:
        first.stop()
        second.stop()
    assert statuses.count(200) == 10 and statuses.count(402) == 90
    assert keys.find("ten-shared").quota == 0


def _multipart_head(boundary: str, apikey: str) -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="apikey"\r\n\r\n{apikey}\r\n',
        f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\ndetect_faces\r\n',
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="file"\r\n\r\n',
    ]
    return "".join(parts).encode()


def _read_status(sock: socket.socket) -> int:
    sock.settimeout(30)
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1])


def test_oversized_upload_refused_before_the_body_is_read(
    live_server: LiveServer, apikey: str
) -> None:
    boundary = "limitboundary"
    declared = 51 * MB
    with socket.create_connection(("127.0.0.1", live_server.port)) as sock:
        sock.sendall(
            (
                f"POST /api/v2/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: {declared}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
            ).encode()
            + _multipart_head(boundary, apikey)
            + b"\xff\xd8\xff"
            + b"\x00" * MB
        )
        # 1 MB of the declared 51 MB is sent, and the answer comes at once.
        assert _read_status(sock) == 413


def test_oversized_chunked_upload_stops_at_the_limit(live_server: LiveServer, apikey: str) -> None:
    boundary = "chunkedboundary"
    sent = 0
    status = None
    with socket.create_connection(("127.0.0.1", live_server.port)) as sock:
        sock.sendall(
            (
                f"POST /api/v2/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
            ).encode()
        )
        head = _multipart_head(boundary, apikey) + b"\xff\xd8\xff"
        sock.sendall(f"{len(head):x}\r\n".encode() + head + b"\r\n")
        block = b"\x00" * MB
        sock.setblocking(False)
        deadline = time.monotonic() + 60
        while sent < 150 * MB and time.monotonic() < deadline:
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break  # the server answered
            except BlockingIOError:
                pass
            try:
                sock.setblocking(True)
                sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                sent += len(block)
            except (BrokenPipeError, ConnectionResetError):
                break
            finally:
                sock.setblocking(False)
        sock.setblocking(True)
        status = _read_status(sock)
    assert status == 413
    # The server answered at its limit (50 MB plus the form and the
    # socket buffers between us), not after the 150 MB this client would send.
    assert sent <= 70 * MB


def test_51mb_file_via_requests(live_server: LiveServer, apikey: str) -> None:
    payload = b"\xff\xd8\xff" + b"\x00" * (51 * MB)
    try:
        response = requests.post(
            live_server.url,
            data={"apikey": apikey, "type": "detect_faces"},
            files={"file": payload},
            timeout=60,
        )
    except requests.ConnectionError:
        pytest.skip("the client was cut off while sending, as the server stopped reading")
    assert response.status_code == 413 and response.json()["status"] == 413


def test_a_request_whose_client_left_is_dropped_and_refunded(
    live_server: LiveServer, keys: KeyStore, astronaut: Image.Image
) -> None:
    key = keys.create("leaver", quota=100)
    base = astronaut.resize((1024, 1024))

    def distinct(index: int) -> bytes:
        image = base.copy()
        image.putpixel((index, 0), (index, 0, 0))
        return encode(image)

    fields = {"apikey": key, "type": "objects", "max_labels": "5", "min_confidence": "50"}

    def busy(index: int) -> int:
        response = requests.post(
            live_server.url, data=fields, files={"file": distinct(index)}, timeout=120
        )
        return response.status_code

    leaving = requests.Request(
        "POST", live_server.url, data=fields, files={"file": distinct(99)}
    ).prepare()
    head = (
        f"POST /api/v2/ HTTP/1.1\r\nHost: 127.0.0.1:{live_server.port}\r\n"
        f"Content-Type: {leaving.headers['Content-Type']}\r\n"
        f"Content-Length: {len(leaving.body)}\r\n\r\n"
    ).encode()
    with ThreadPoolExecutor(max_workers=4) as pool:
        # Four requests keep the one inference thread busy for a while...
        statuses = pool.map(busy, range(4))
        time.sleep(0.3)
        # ...while a fifth is sent whole, queued behind them, and its client leaves.
        with socket.create_connection(("127.0.0.1", live_server.port)) as leaver:
            leaver.sendall(head + leaving.body)
            time.sleep(0.2)
        assert list(statuses) == [200] * 4
    stored = requests.get(live_server.url, params={"apikey": key, "type": "cache"}).json()
    assert len(stored["data"]["objects"]) == 4  # the fifth was never answered nor stored
    deadline = time.monotonic() + 10
    while keys.find("leaver").quota != 96 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert keys.find("leaver").quota == 96  # four charged, the fifth refunded
