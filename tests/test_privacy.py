"""Privacy controls, judged by the database's own tables after real requests, on SQLite and
PostgreSQL: no stored results with STORE_RESULTS=false, retention enforced while the server
runs (on a clock the test controls), purges by key and age, an owner deleting one result, and
the audit log of every change to keys, quota and the gallery (never a key or an image)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from server import cli
from server.http.app import create_app
from server.settings import Settings, get_settings
from server.store.db import (
    MIGRATIONS,
    ApiKey,
    AuditEntry,
    QuotaReservation,
    StoredResult,
    init_db,
    make_engine,
    utcnow,
)
from server.store.keys import KeyStore, hash_key
from tests.conftest import encode, make_settings, post_api
from tests.test_celebrities import GALLERY, enrol

RESULTS = "/api/v2/results/"


class Clock:
    """The time the server sees, moved by the test (no waiting days)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, days: float) -> None:
        self.now += timedelta(days=days)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    init_db(engine)
    yield engine
    engine.dispose()


def settings_for(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    return make_settings(tmp_path / "data", database_url=database_url, **overrides)


def analyse(client: TestClient, key: str, data: bytes) -> dict:
    body = post_api(client, {"apikey": key, "type": "detect_faces"}, data)
    assert body["status"] == 200, body
    return body["data"]


def cache(client: TestClient, key: str, **fields: str) -> dict:
    response = client.get("/api/v2/", params={"apikey": key, "type": "cache", **fields})
    body = response.json()
    assert response.status_code == body["status"]
    return body


def delete_result(client: TestClient, result_id: str, **params: str) -> dict:
    response = client.delete(RESULTS + result_id, params=params)
    body = response.json()
    assert response.status_code == body["status"]
    return body


def stored(engine: Engine) -> list[tuple[str, str]]:
    """(key name, result id) of every row of the results table."""
    with Session(engine) as session:
        return sorted(
            session.execute(
                select(ApiKey.name, StoredResult.id).join(ApiKey, ApiKey.id == StoredResult.key_id)
            ).all()
        )


def audit_rows(engine: Engine) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def images(astronaut: Image.Image, count: int) -> list[bytes]:
    """Small distinct JPEGs (distinct bytes: distinct analyses)."""
    small = astronaut.resize((160, 160))
    return [encode(small, quality=90 - 5 * i) for i in range(count)]


def run_cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> int:
    """`imagerecognize ARGV` in this process, on ``settings``' database."""
    monkeypatch.setenv("IMAGERECOGNIZE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("IMAGERECOGNIZE_DATABASE_URL", settings.resolved_database_url)
    get_settings.cache_clear()
    try:
        return cli.main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        return int(exc.code or 0)
    finally:
        get_settings.cache_clear()


@pytest.mark.slow
def test_store_results_false_stores_nothing_and_cache_says_so(
    tmp_path: Path, database_url: str, engine: Engine, astronaut: Image.Image
) -> None:
    settings = settings_for(tmp_path, database_url, store_results=False)
    key = KeyStore(engine).create("private", quota=3)
    image = images(astronaut, 1)[0]
    with TestClient(create_app(settings)) as client:
        first = analyse(client, key, image)
        assert first["id"] is None and first["cached"] is False and first["quota"] == 2
        assert first["objects"], "the analysis itself is answered"
        # Nothing to reuse: the model runs again, and it is charged again.
        again = analyse(client, key, image)
        assert again["cached"] is False and again["quota"] == 1
        assert again["objects"] == first["objects"]
        listed = cache(client, key)
        assert listed["status"] == 200
        assert listed["data"]["objects"] == [] and listed["data"]["storing"] is False
        assert listed["data"]["quota"] == 1
        one = cache(client, key, id="0" * 32)
        assert one["status"] == 200 and one["data"]["objects"] == []
    assert stored(engine) == []
    with Session(engine) as session:  # each unit settled, none left reserved
        assert session.scalar(select(func.count()).select_from(QuotaReservation)) == 0
        assert session.scalars(select(ApiKey.quota).where(ApiKey.name == "private")).one() == 1


@pytest.mark.slow
def test_cache_says_storing_is_on_by_default(
    tmp_path: Path, database_url: str, engine: Engine, astronaut: Image.Image
) -> None:
    key = KeyStore(engine).create("default")
    with TestClient(create_app(settings_for(tmp_path, database_url))) as client:
        result = analyse(client, key, images(astronaut, 1)[0])
        listed = cache(client, key)["data"]
    assert listed["storing"] is True and [e["id"] for e in listed["objects"]] == [result["id"]]
    assert stored(engine) == [("default", result["id"])]


@pytest.mark.slow
def test_retention_deletes_old_results_while_the_server_runs(
    tmp_path: Path, database_url: str, engine: Engine, astronaut: Image.Image
) -> None:
    settings = settings_for(
        tmp_path, database_url, result_retention_days=30, result_purge_interval_s=0.05
    )
    key = KeyStore(engine).create("kept-for-a-while")
    clock = Clock()
    old_image, new_image = images(astronaut, 2)
    with TestClient(create_app(settings, clock=clock)) as client:
        old = analyse(client, key, old_image)["id"]
        clock.advance(20)
        new = analyse(client, key, new_image)["id"]
        clock.advance(15)  # old: 35 days, new: 15 days
        # The server's own periodic task deletes it; nothing here asks it to.
        deadline = time.monotonic() + 60
        while len(stored(engine)) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored(engine) == [("kept-for-a-while", new)]
        assert [e["id"] for e in cache(client, key)["data"]["objects"]] == [new]
        assert delete_result(client, old, apikey=key)["status"] == 421  # already gone
    expired = [row for row in audit_rows(engine) if row.action == "results.expire"]
    assert len(expired) == 1 and expired[0].actor == "server"
    assert expired[0].details == {"deleted": 1, "retention_days": 30.0}


@pytest.mark.slow
def test_purge_cli_by_key_and_by_age(
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    astronaut: Image.Image,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_for(tmp_path, database_url)
    keys = KeyStore(engine)
    alice, bob = keys.create("alice"), keys.create("bob")
    clock = Clock()
    clock.advance(-10)
    old_image, new_image = images(astronaut, 2)
    ids: dict[str, str] = {}
    with TestClient(create_app(settings, clock=clock)) as client:
        for name, key in (("alice", alice), ("bob", bob)):
            ids[f"{name}-old"] = analyse(client, key, old_image)["id"]
        clock.advance(10)
        for name, key in (("alice", alice), ("bob", bob)):
            ids[f"{name}-new"] = analyse(client, key, new_image)["id"]
    assert len(stored(engine)) == 4

    assert run_cli(monkeypatch, settings, "results", "purge", "--key", "alice",
                   "--older-than", "5") == 0
    assert stored(engine) == sorted(
        [("alice", ids["alice-new"]), ("bob", ids["bob-old"]), ("bob", ids["bob-new"])]
    )
    assert run_cli(monkeypatch, settings, "results", "purge", "--older-than", "5") == 0
    assert stored(engine) == sorted([("alice", ids["alice-new"]), ("bob", ids["bob-new"])])
    assert run_cli(monkeypatch, settings, "results", "purge", "--key", "bob") == 0
    assert stored(engine) == [("alice", ids["alice-new"])]
    # Refused, nothing deleted: an unknown key, or no choice of what to delete.
    assert run_cli(monkeypatch, settings, "results", "purge", "--key", "nobody") == 1
    assert run_cli(monkeypatch, settings, "results", "purge") == 2
    assert run_cli(monkeypatch, settings, "results", "purge", "--older-than", "-1") == 2
    assert stored(engine) == [("alice", ids["alice-new"])]
    assert run_cli(monkeypatch, settings, "results", "purge", "--all") == 0
    assert stored(engine) == []

    purges = [
        (row.actor, row.subject, row.details)
        for row in audit_rows(engine)
        if row.action == "results.purge"
    ]
    assert purges == [
        ("cli", "alice", {"key": "alice", "older_than_days": 5.0, "deleted": 1}),
        ("cli", None, {"key": None, "older_than_days": 5.0, "deleted": 1}),
        ("cli", "bob", {"key": "bob", "older_than_days": None, "deleted": 1}),
        ("cli", None, {"key": None, "older_than_days": None, "deleted": 1}),
    ]


@pytest.mark.slow
def test_owner_deletes_one_result_and_no_other_key_can(
    tmp_path: Path, database_url: str, engine: Engine, astronaut: Image.Image
) -> None:
    keys = KeyStore(engine)
    owner, other = keys.create("owner"), keys.create("other", is_admin=True)
    first_image, second_image = images(astronaut, 2)
    with TestClient(create_app(settings_for(tmp_path, database_url))) as client:
        first = analyse(client, owner, first_image)["id"]
        second = analyse(client, owner, second_image)["id"]
        # Another key (an admin one too) is told what an unknown id is told.
        refused = delete_result(client, first, apikey=other)
        assert refused["status"] == 421
        assert refused["status_message"] == "Invalid parameter: id (no such result for this key)"
        assert delete_result(client, first)["status"] == 400
        assert delete_result(client, first, apikey="ir_not-a-key")["status"] == 401
        assert delete_result(client, "x" * 33, apikey=owner)["status"] == 421
        assert delete_result(client, "a%00b", apikey=owner)["status"] == 421
        assert stored(engine) == sorted([("owner", first), ("owner", second)])

        done = delete_result(client, first, apikey=owner)
        assert done["status"] == 200 and done["data"] == {"deleted": first}
        assert stored(engine) == [("owner", second)]
        assert [e["id"] for e in cache(client, owner)["data"]["objects"]] == [second]
        assert delete_result(client, first, apikey=owner)["status"] == 421  # once only
        # The key in the form body works as in the query string.
        body = client.request("DELETE", RESULTS + second, data={"apikey": owner}).json()
        assert body["status"] == 200
    assert stored(engine) == []
    deletions = [
        (row.actor, row.subject) for row in audit_rows(engine) if row.action == "results.delete"
    ]
    assert deletions == [("key:owner", first), ("key:owner", second)]


@pytest.mark.slow
def test_audit_log_records_every_change_without_a_secret(
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    grace_hopper: Image.Image,
    astronaut: Image.Image,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Storing off: the gallery, the operator's own data, works all the same.
    settings = settings_for(tmp_path, database_url, store_results=False)
    keys = KeyStore(engine)
    admin = keys.create("admin", is_admin=True)
    assert run_cli(monkeypatch, settings, "keys", "create", "--name", "shop", "--quota", "5") == 0
    shop = capsys.readouterr().out.strip()
    assert run_cli(monkeypatch, settings, "keys", "set-quota", "shop", "unlimited") == 0
    assert run_cli(monkeypatch, settings, "keys", "revoke", shop) == 0  # by its value
    photo = encode(grace_hopper)
    with TestClient(create_app(settings)) as client:
        enrolled = enrol(client, admin, "Grace Hopper", ("grace.jpg", photo), ("g2.jpg", photo))
        assert enrolled["status"] == 200, enrolled
        face_ids = enrolled["data"]["face_ids"]
        enrol(client, admin, "Eileen Collins", ("eileen.jpg", encode(astronaut)))
        removed = client.delete(f"{GALLERY}Grace Hopper/faces/{face_ids[0]}",
                                params={"apikey": admin}).json()
        assert removed["status"] == 200, removed
        assert client.delete(f"{GALLERY}Grace Hopper", params={"apikey": admin}).json()[
            "status"] == 200
        people = client.get(GALLERY, params={"apikey": admin}).json()["data"]["people"]
        assert [person["name"] for person in people] == ["Eileen Collins"]
    assert run_cli(monkeypatch, settings, "gallery", "remove", "Eileen Collins") == 0
    capsys.readouterr()

    rows = audit_rows(engine)
    assert [(row.actor, row.action, row.subject) for row in rows] == [
        ("cli", "key.create", "admin"),  # the store's own caller: the operator's tools
        ("cli", "key.create", "shop"),
        ("cli", "key.set_quota", "shop"),
        ("cli", "key.revoke", "shop"),
        ("key:admin", "gallery.enrol", "Grace Hopper"),
        ("key:admin", "gallery.enrol", "Eileen Collins"),
        ("key:admin", "gallery.remove_face", "Grace Hopper"),
        ("key:admin", "gallery.remove_person", "Grace Hopper"),
        ("cli", "gallery.remove_person", "Eileen Collins"),
    ]
    assert rows[1].details == {"quota": 5, "admin": False}
    assert rows[2].details == {"quota": None, "was": 5}
    assert rows[4].details["face_ids"] == face_ids
    assert rows[6].details == {"face_id": face_ids[0]}
    assert rows[7].details == {"face_ids": face_ids[1:]}
    times = [row.at for row in rows]
    assert times == sorted(times)

    # No key, no key hash, no photo (not even its file name) in any column of any row.
    with engine.connect() as connection:
        text = json.dumps(
            [list(row) for row in connection.execute(select(AuditEntry.__table__)).all()],
            default=str,
        )
    for secret in (admin, shop, hash_key(admin), hash_key(shop), admin[:8], shop[:8]):
        assert secret not in text
    assert "grace.jpg" not in text and "PNG" not in text and len(text) < 2000

    # The command: newest first, filtered.
    assert run_cli(monkeypatch, settings, "audit", "--json") == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [entry["id"] for entry in shown] == [row.id for row in reversed(rows)]
    assert shown[-1]["at"].endswith("Z") and shown[-1]["action"] == "key.create"
    assert run_cli(monkeypatch, settings, "audit", "--json", "--actor", "key:admin",
                   "--action", "gallery.enrol", "--limit", "1") == 0
    (only,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert only["subject"] == "Eileen Collins"
    assert run_cli(monkeypatch, settings, "audit", "--subject", "shop", "--days", "1") == 0
    table = capsys.readouterr().out
    assert table.count("shop") == 3 and shop not in table


def test_migration_0003_upgrades_a_0002_database(database_url: str) -> None:
    engine = make_engine(database_url)
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    with engine.connect() as connection:
        assert "audit_log" not in inspect(connection).get_table_names()
    # A 0002 database in use: a key and its stored result.
    with engine.begin() as connection:
        connection.execute(
            ApiKey.__table__.insert().values(
                id=1, name="before", key_hash="f" * 64, key_prefix="ir_abcde", quota=4,
                is_admin=False, revoked=False, created_at=utcnow(),
            )
        )
        connection.execute(
            StoredResult.__table__.insert().values(
                id="b" * 32, key_id=1, type="nsfw", created_at=utcnow(), image_sha256="0" * 64,
                image_width=1, image_height=1, image_format="png", params={},
                model_name="open_nsfw", model_version="1", objects=[], extra=None,
                lookup_hash="2" * 64,
            )
        )

    init_db(engine)

    assert stored(engine) == [("before", "b" * 32)]
    assert audit_rows(engine) == []
    KeyStore(engine).revoke("before")
    (row,) = audit_rows(engine)
    assert (row.actor, row.action, row.subject) == ("cli", "key.revoke", "before")
    engine.dispose()
