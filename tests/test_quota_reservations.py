"""A unit of quota is charged if and only if a result is stored, also when the server process
is killed or the client gives up: reservations, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from models.base import Analysis, ModelId
from models.images import ImageInfo
from server.errors import ModelUnavailableError
from server.store.db import QuotaReservation, StoredResult, init_db, make_engine
from server.store.keys import KeyStore
from server.store.results import ResultStore
from tests.conftest import ROOT, LiveServer, encode, make_settings


@pytest.fixture
def engine(database_url: str):
    engine = make_engine(database_url)
    init_db(engine)
    yield engine
    engine.dispose()


def stored_results(engine: Engine, key_id: int) -> int:
    with Session(engine) as session:
        return session.scalar(
            select(func.count()).select_from(StoredResult).where(StoredResult.key_id == key_id)
        )


def reservations(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(QuotaReservation))


FIELDS = {"type": "objects", "max_labels": "5", "min_confidence": "50"}
PARAMS = {"max_labels": 5, "min_confidence": 50}
INFO = ImageInfo("png", 8, 8, "0" * 64, 10)


def save(results: ResultStore, key_id: int, reservation) -> str:
    return results.save(
        key_id, "objects", INFO, {}, ModelId("m", "1"), Analysis([], {}), "l" * 64, reservation
    )


def test_a_stored_result_keeps_its_unit_and_a_refund_comes_too_late(engine: Engine) -> None:
    keys, results = KeyStore(engine), ResultStore(engine, 30)
    keys.create("k", quota=3)
    key = keys.find("k")
    reservation = keys.reserve(key)
    assert reservation.remaining == 2 and reservations(engine) == 1
    save(results, key.id, reservation)
    assert not keys.refund(reservation)  # e.g. the client left as the result was stored
    assert keys.find("k").quota == 2 and stored_results(engine, key.id) == 1
    assert reservations(engine) == 0


def test_a_result_after_its_refund_is_not_stored(engine: Engine) -> None:
    keys, results = KeyStore(engine), ResultStore(engine, 30)
    keys.create("k", quota=3)
    key = keys.find("k")
    reservation = keys.reserve(key)
    assert keys.refund(reservation)
    with pytest.raises(ModelUnavailableError):
        save(results, key.id, reservation)
    assert keys.find("k").quota == 3 and stored_results(engine, key.id) == 0


def test_an_unlimited_key_reserves_nothing(engine: Engine) -> None:
    keys, results = KeyStore(engine), ResultStore(engine, 30)
    keys.create("free")
    key = keys.find("free")
    reservation = keys.reserve(key)
    assert reservation.remaining is None and reservations(engine) == 0
    save(results, key.id, reservation)
    assert not keys.refund(reservation) and stored_results(engine, key.id) == 1


def test_reservations_of_a_killed_process_are_given_back(
    engine: Engine, database_url: str
) -> None:
    keys = KeyStore(engine)
    keys.create("k", quota=10)
    mine = keys.reserve(keys.find("k"))  # this process lives on: kept
    script = (
        "import os, signal, sys; from server.store.db import make_engine; "
        "from server.store.keys import KeyStore; keys = KeyStore(make_engine(sys.argv[1])); "
        "[keys.reserve(keys.find('k')) for _ in range(3)]; "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run([sys.executable, "-c", script, database_url], cwd=ROOT, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert keys.find("k").quota == 6 and reservations(engine) == 4
    assert keys.reclaim_abandoned(older_than_s=3600) == 3
    assert keys.find("k").quota == 9 and reservations(engine) == 1
    assert keys.reclaim_abandoned(older_than_s=0) == 1  # older than any request lives
    assert keys.find("k").quota == 10 and not keys.refund(mine)


class _SlowReserve(KeyStore):
    """Reserves only once the test lets it, so that the request can be cancelled meanwhile."""

    def __init__(self, engine: Engine):
        super().__init__(engine)
        self.entered = threading.Event()
        self.proceed = threading.Event()
        self.reserved = threading.Event()

    def reserve(self, key):
        self.entered.set()
        self.proceed.wait(30)
        try:
            return super().reserve(key)
        finally:
            self.reserved.set()


def test_a_request_cancelled_while_its_unit_is_taken_keeps_none(tmp_path: Path) -> None:
    """The early give-up: the thread takes the unit after the request was cancelled."""
    from server.pipeline.analysis import AnalysisPipeline
    from server.service.application import ApplicationService
    from server.store.gallery import Gallery

    settings = make_settings(tmp_path / "data")
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    keys = _SlowReserve(engine)
    apikey = keys.create("leaver", quota=5)
    pipeline = AnalysisPipeline(settings)
    service = ApplicationService(
        settings, keys, ResultStore(engine, 30), Gallery(engine), pipeline
    )
    image = encode(Image.new("RGB", (64, 64), "gray"), "PNG")

    async def scenario() -> None:
        request = asyncio.create_task(
            service.analyze(keys.authenticate(apikey), FIELDS["type"], PARAMS, image)
        )
        await asyncio.to_thread(keys.entered.wait, 30)
        request.cancel()  # the client gives up
        keys.proceed.set()
        with pytest.raises(asyncio.CancelledError):
            await request
        await asyncio.to_thread(keys.reserved.wait, 30)
        deadline = time.monotonic() + 10
        while reservations(engine) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    try:
        asyncio.run(scenario())
        assert keys.find("leaver").quota == 5 and reservations(engine) == 0
    finally:
        asyncio.run(pipeline.close())
        engine.dispose()


# Live servers.


def distinct_images(count: int) -> list[bytes]:
    base = Image.new("RGB", (96, 96), (120, 130, 140))
    images = []
    for index in range(count):
        image = base.copy()
        image.putpixel((index % 96, index // 96), (index % 256, 0, 0))
        images.append(encode(image, "PNG"))
    return images




@pytest.mark.slow
def test_quota_used_equals_results_stored_after_kill_9_under_load(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    keys = KeyStore(engine)
    key = keys.create("loaded", quota=10_000)
    key_id = keys.find("loaded").id
    environment = {"IMAGERECOGNIZE_DATABASE_URL": database_url}
    data_dir = tmp_path / "data"
    server = LiveServer(data_dir, environment)
    images = iter(distinct_images(5000))
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                requests.post(
                    server.url, data={"apikey": key, **FIELDS},
                    files={"file": next(images)}, timeout=300,
                )
            except requests.RequestException:
                return

    try:
        warm = requests.post(  # the model loaded
            server.url, data={"apikey": key, **FIELDS}, files={"file": next(images)}, timeout=300
        )
        assert warm.status_code == 200
        with ThreadPoolExecutor(max_workers=6) as pool:
            for _ in range(6):
                pool.submit(client)
            deadline = time.monotonic() + 300
            while stored_results(engine, key_id) < 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # at full load
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(30)
            stop.set()
        charged_at_crash = 10_000 - keys.find("loaded").quota
        assert charged_at_crash > stored_results(engine, key_id) > 0  # requests were in flight
        server = LiveServer(data_dir, environment)  # restarts, gives back the dead's units
    finally:
        stop.set()
        server.stop()
    assert 10_000 - keys.find("loaded").quota == stored_results(engine, key_id)
    assert reservations(engine) == 0


@pytest.mark.slow
def test_clients_giving_up_early_are_never_charged(
    live_server: LiveServer, keys: KeyStore
) -> None:
    key = keys.create("quitter", quota=1000)
    images = distinct_images(40)
    random_delays = random.Random(15)

    def give_up(image: bytes) -> None:
        prepared = requests.Request(
            "POST", live_server.url, data={"apikey": key, **FIELDS}, files={"file": image}
        ).prepare()
        head = (
            f"POST /api/v2/ HTTP/1.1\r\nHost: 127.0.0.1:{live_server.port}\r\n"
            f"Content-Type: {prepared.headers['Content-Type']}\r\n"
            f"Content-Length: {len(prepared.body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", live_server.port)) as sock:
            sock.sendall(head + prepared.body)
            time.sleep(random_delays.uniform(0.01, 0.25))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(give_up, images))
    key_id = keys.find("quitter").id
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until every dropped request has settled
        used, stored = 1000 - keys.find("quitter").quota, stored_results(keys.engine, key_id)
        if used == stored and reservations(keys.engine) == 0:
            break
        time.sleep(0.5)
    assert used == stored, (used, stored)
