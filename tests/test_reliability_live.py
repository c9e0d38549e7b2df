"""The HTTP server's own limits, on a live `imagerecognize serve`: header size, header time,
and half-closed sockets."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from server.settings import Settings
from server.store.keys import KeyStore
from tests.conftest import LiveServer

pytestmark = pytest.mark.slow

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    live = LiveServer(
        settings.data_dir,
        env={
            "IMAGERECOGNIZE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
            "IMAGERECOGNIZE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        },
    )
    yield live
    live.stop()


def read_all(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    received = bytearray()
    try:
        while chunk := sock.recv(65536):
            received.extend(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return bytes(received)


def status_and_body(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_huge_header_is_refused(server: LiveServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # A fixed, small send buffer: a loopback socket's grows to 4 MiB by itself, which
        # would hold as much as the bound below before any byte reaches the server.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: ")
        sent = 0
        try:
            while sent < 16 * 1024 * 1024:  # stops long before, when the server closes
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock, 10)
    assert sent < 4 * 1024 * 1024, sent
    if answer:  # the answer may be lost to the reset of a client still sending
        assert status_and_body(answer) == (
            431,
            {"status": 431, "status_message": "Request Header Fields Too Large", "data": None},
        )
    assert requests.get(f"http://127.0.0.1:{server.port}/health", timeout=10).ok


def test_a_half_sent_request_is_let_go(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        answer = read_all(sock, 30)
        waited = time.monotonic() - started
    assert status_and_body(answer)[0] == 408
    assert waited < HEADER_TIMEOUT_S + 5, waited
    with socket.create_connection(("127.0.0.1", server.port)) as idle:
        assert status_and_body(read_all(idle, 30))[0] == 408  # connected, sent nothing


def test_a_body_that_stops_arriving_is_let_go(server: LiveServer, keys: KeyStore) -> None:
    key = keys.create("stalled", quota=5)
    head = (
        b"POST /api/v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    )
    part = f'--b\r\nContent-Disposition: form-data; name="apikey"\r\n\r\n{key}\r\n'.encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        started = time.monotonic()
        sock.sendall(head + part)  # then nothing more of the 100,000 bytes announced
        answer = read_all(sock, 30)
        waited = time.monotonic() - started
    assert status_and_body(answer)[0] == 408
    assert waited < BODY_TIMEOUT_S + 5, waited
    # A body that keeps moving, however slowly, is read to its end.
    body = part + b'--b\r\nContent-Disposition: form-data; name="type"\r\n\r\ncache\r\n--b--\r\n'
    head = head.replace(b"100000", str(len(body)).encode())
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head)
        for start in range(0, len(body), 40):
            time.sleep(BODY_TIMEOUT_S / 4)
            sock.sendall(body[start : start + 40])
        sock.shutdown(socket.SHUT_WR)
        got, answered = status_and_body(read_all(sock, 30))
    assert got == 200 and answered["data"]["quota"] == 5, answered


def test_a_half_closed_client_gets_its_answer(server: LiveServer, keys: KeyStore) -> None:
    key = keys.create("half-closer")
    for query, status in ((f"apikey={key}&type=cache", 200), ("apikey=ir_nobody&type=x", 401)):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(f"GET /api/v2/?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.shutdown(socket.SHUT_WR)
            answer = read_all(sock, 30)
        assert answer, "no answer"
        got, body = status_and_body(answer)
        assert got == status == body["status"], body
