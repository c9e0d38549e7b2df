"""The databases that database tests run on: a SQLite file, and a fresh PostgreSQL database
per test on the server named by IMAGERECOGNIZE_TEST_POSTGRES_URL (`.ci/run` sets it). Where it
is unset, the local PostgreSQL cluster is started with scripts/test-postgres.sh; PostgreSQL
tests are skipped only when that cannot be done either."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL_VARIABLE = "IMAGERECOGNIZE_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE, "")
    if not url and shutil.which("pg_lsclusters"):
        started = subprocess.run(
            [ROOT / "scripts" / "test-postgres.sh"], capture_output=True, text=True, timeout=120
        )
        if started.returncode == 0:
            url = started.stdout.strip().splitlines()[-1]
    if not url:
        pytest.skip(f"no PostgreSQL: {POSTGRES_URL_VARIABLE} is unset and none could be started")
    return url


@contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url``, dropped afterwards."""
    name = "ir_test_" + secrets.token_hex(6)
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        (tmp_path / "db").mkdir(exist_ok=True)
        yield f"sqlite:///{tmp_path / 'db' / 'imagerecognize.db'}"
        return
    with fresh_postgres_database(request.getfixturevalue("postgres_url")) as url:
        yield url
