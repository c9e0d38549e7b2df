"""`serve --workers 2` on a new database starts every time: the schema is made once, before
the workers start, safely against another process doing the same (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port
from tests.databases import fresh_postgres_database

pytestmark = pytest.mark.slow

STARTS = 5


@contextmanager
def new_database(kind: str, tmp_path: Path, round_: int, request: pytest.FixtureRequest):
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'db{round_}' / 'imagerecognize.db'}"
        return
    with fresh_postgres_database(request.getfixturevalue("postgres_url")) as url:
        yield url


def start_two_workers(data_dir: Path, database_url: str) -> str:
    port = free_port()
    log = data_dir.parent / f"serve-{port}.log"
    environment = {
        **os.environ,
        "IMAGERECOGNIZE_DATA_DIR": str(data_dir),
        "IMAGERECOGNIZE_DATABASE_URL": database_url,
    }
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port), "--workers", "2"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            text = log.read_text()
            if text.count("Application startup complete") >= 2:
                break
            time.sleep(0.3)
        time.sleep(1.0)  # a worker that failed would be reported by now
        text = log.read_text()
        assert process.poll() is None, text
        assert text.count("Application startup complete") == 2, text
        assert "Traceback" not in text and "Child process" not in text, text
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=10).ok
        return text
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_workers_start_on_a_new_database_every_time(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    for round_ in range(STARTS):
        with new_database(kind, tmp_path, round_, request) as url:
            start_two_workers(tmp_path / f"data{round_}", url)
