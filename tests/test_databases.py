"""The database on SQLite and on PostgreSQL alike: keys and quota (also across two server
processes), stored results, the gallery, and the schema migrations."""

from __future__ import annotations

import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import column, func, insert, inspect, select, table, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from server.errors import ApiError
from server.http.app import create_app
from server.settings import Settings
from server.store.db import (
    MIGRATIONS,
    ApiKey,
    Base,
    FaceDescriptor,
    GalleryFace,
    GalleryState,
    Person,
    StoredResult,
    init_db,
    make_engine,
    utcnow,
)
from server.store.gallery import (
    DEFAULT_COLLECTION,
    EnrolledFace,
    FaceNotFoundError,
    Gallery,
    _png,
)
from server.store.keys import KeyManagementError, KeyStore, Reservation, hash_key
from tests.conftest import ROOT, LiveServer, encode, make_settings
from tests.test_cache import analyse, cache
from tests.test_celebrities import GALLERY, celebrities, enrol
from tests.test_live import _hammer


@pytest.fixture
def db_settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "data", database_url=database_url)


@pytest.fixture
def engine(database_url: str):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


SCHEMA_BEFORE_MIGRATIONS = {
    "api_keys", "results", "people", "gallery_faces", "face_descriptors", "gallery_state"
}


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_keys_and_exact_quota_under_threads(engine: Engine) -> None:
    init_db(engine)
    store = KeyStore(engine)
    key = store.create("alice", quota=5)
    with pytest.raises(KeyManagementError):
        store.create("alice")
    record = store.authenticate(key)
    assert record is not None and record.quota == 5 and store.authenticate(key + "x") is None

    def reserve(_: int) -> Reservation | None:
        try:
            return store.reserve(record)
        except ApiError:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        granted = [r for r in pool.map(reserve, range(40)) if r is not None]
    assert len(granted) == 5 and store.find("alice").quota == 0
    assert store.refund(granted[0]) and not store.refund(granted[0])  # given back once
    assert store.find("alice").quota == 1
    store.revoke("alice")
    assert store.authenticate(key) is None


@pytest.mark.slow
def test_quota_exact_across_two_server_processes(
    db_settings: Settings, database_url: str, engine: Engine, astronaut: Image.Image
) -> None:
    init_db(engine)
    keys = KeyStore(engine)
    key = keys.create("ten-shared", quota=10)
    environment = {"IMAGERECOGNIZE_DATABASE_URL": database_url}
    first = LiveServer(db_settings.data_dir, environment)
    try:
        second = LiveServer(db_settings.data_dir, environment)
        try:
            statuses = _hammer(
                [first.url, second.url], key, encode(astronaut.resize((80, 80))), 60
            )
        finally:
            second.stop()
    finally:
        first.stop()
    assert statuses.count(200) == 10 and statuses.count(402) == 50
    assert keys.find("ten-shared").quota == 0


def test_stored_results(db_settings: Settings, engine: Engine, astronaut: Image.Image) -> None:
    with TestClient(create_app(db_settings)) as client:
        key = KeyStore(engine).create("repeat", quota=3)
        first = analyse(client, key, encode(astronaut))
        again = analyse(client, key, encode(astronaut))
        assert again["cached"] is True and again["id"] == first["id"] and again["quota"] == 1
        listed = cache(client, key)["data"]["objects"]
        assert [entry["id"] for entry in listed] == [first["id"]]
        assert listed[0]["objects"] == first["objects"]


@pytest.mark.slow
def test_gallery_change_through_one_app_is_seen_by_another(
    db_settings: Settings, engine: Engine, astronaut: Image.Image
) -> None:
    with (
        TestClient(create_app(db_settings)) as one,
        TestClient(create_app(db_settings)) as other,
    ):
        keys = KeyStore(engine)
        admin, user = keys.create("admin", is_admin=True), keys.create("user")
        assert celebrities(other, user, encode(astronaut))["objects"] == []
        body = enrol(one, admin, "Eileen Collins", ("a.png", encode(astronaut, "PNG")))
        assert body["status"] == 200
        assert celebrities(other, user, encode(astronaut))["objects"][0]["name"] == (
            "Eileen Collins"
        )
        removed = other.delete(GALLERY + "Eileen Collins", params={"apikey": admin})
        assert removed.status_code == 200
        assert celebrities(one, user, encode(astronaut))["objects"] == []


def upgrade_to(engine: Engine, revision: str) -> None:
    """The schema as migration ``revision`` left it (an older server's database)."""
    from alembic import command

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


# The gallery's tables as they were before migration 0004 (collections, face UUIDs): rows
# are written in them as an older server wrote them.
OLD_PEOPLE = table("people", column("id"), column("name"), column("created_at"))
OLD_FACES = table(
    "gallery_faces", column("id"), column("person_id"), column("source"),
    column("aligned_png"), column("created_at"),
)
OLD_DESCRIPTORS = table("face_descriptors", column("face_id"), column("model"), column("vector"))
OLD_STATE = table("gallery_state", column("id"), column("version"))


def test_upgrade_keeps_a_database_made_by_the_schema_before_migrations(engine: Engine) -> None:
    # The schema as the server made it before migrations existed: create_all of the tables
    # that migration 0001 makes, no alembic_version table.
    upgrade_to(engine, "0001")
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    assert set(inspect(engine).get_table_names()) == SCHEMA_BEFORE_MIGRATIONS
    # Written as that schema's server wrote it (today's KeyStore also writes the audit log).
    key = "ir_made-before-migrations"
    with engine.begin() as connection:
        connection.execute(
            insert(ApiKey.__table__).values(
                name="kept", key_hash=hash_key(key), key_prefix=key[:8], quota=7,
                is_admin=False, revoked=False, created_at=utcnow(),
            )
        )
    with engine.begin() as connection:
        key_id = connection.scalars(select(ApiKey.id)).one()
        connection.execute(
            insert(StoredResult.__table__).values(
                id="a" * 32,
                key_id=key_id,
                type="detect_faces",
                created_at=utcnow(),
                image_sha256="0" * 64,
                image_width=10,
                image_height=20,
                image_format="jpeg",
                params={"min_confidence": 50},
                model_name="mtcnn",
                model_version="1",
                objects=[{"confidence": 99.5}],
                extra=None,
                lookup_hash="1" * 64,
            )
        )
        connection.execute(
            insert(OLD_PEOPLE).values(id=1, name="Grace Hopper", created_at=utcnow())
        )
        connection.execute(
            insert(OLD_FACES).values(
                id=1, person_id=1, source="grace.jpg", aligned_png=b"\x89PNG", created_at=utcnow()
            )
        )
        connection.execute(
            insert(OLD_DESCRIPTORS).values(face_id=1, model="dlib", vector=b"\x00" * 16)
        )
        connection.execute(insert(OLD_STATE).values(id=1, version=3))
    assert current_revision(engine) is None

    init_db(engine)

    assert current_revision(engine) == head_revision()
    record = KeyStore(engine).authenticate(key)
    assert record is not None and record.name == "kept" and record.quota == 7
    with Session(engine) as session:
        result = session.get(StoredResult, "a" * 32)
        assert result is not None and result.objects == [{"confidence": 99.5}]
        assert result.params == {"min_confidence": 50}
        face = session.scalars(select(GalleryFace)).one()
        assert face.aligned_png == b"\x89PNG" and face.source == "grace.jpg"
        assert face.public_id == "1"
        assert session.scalars(select(Person.name)).all() == ["Grace Hopper"]
        assert session.scalar(select(func.count()).select_from(FaceDescriptor)) == 1
        assert session.get(GalleryState, 1).version == 3


def test_upgrade_from_0003_keeps_faces_and_their_ids(engine: Engine) -> None:
    upgrade_to(engine, "0003")
    png = _png(np.zeros((4, 4, 3), dtype=np.uint8))
    with engine.begin() as connection:
        for person_id, name in ((1, "Ada"), (2, "Grace")):
            connection.execute(
                insert(OLD_PEOPLE).values(id=person_id, name=name, created_at=utcnow())
            )
        for face_id, person_id in ((5, 1), (17, 2), (18, 2)):
            connection.execute(
                insert(OLD_FACES).values(
                    id=face_id, person_id=person_id, source=f"{face_id}.jpg", aligned_png=png,
                    created_at=utcnow(),
                )
            )
            connection.execute(
                insert(OLD_DESCRIPTORS).values(
                    face_id=face_id, model="m", vector=np.array([face_id, 0], "<f4").tobytes()
                )
            )
        connection.execute(insert(OLD_STATE).values(id=1, version=9))
        if connection.dialect.name == "postgresql":  # ids given above: move the sequences on
            for name in ("people", "gallery_faces", "face_descriptors"):
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"(SELECT MAX(id) FROM {name}))"
                    )
                )

    init_db(engine)

    assert current_revision(engine) == head_revision()
    gallery = Gallery(engine)
    assert [(c.name, c.faces, c.people) for c in gallery.collections()] == [
        (DEFAULT_COLLECTION, 3, 2)
    ]
    assert gallery.faces() == ([("5", "Ada"), ("17", "Grace"), ("18", "Grace")], 3)
    assert gallery.version() == 9  # the results cached before stay valid until a change
    assert gallery.matrix("m").names == ["Ada", "Grace", "Grace"]
    assert gallery.face_descriptor("17", "m").tolist() == [17.0, 0.0]
    # The old ids keep working; a new face gets a UUID; the newest old face, once removed,
    # stays removed.
    assert gallery.remove_face_by_id("18") == "Grace"
    added = gallery.enrol(
        "Grace", [EnrolledFace("new.jpg", np.zeros((4, 4, 3), np.uint8), np.ones(2, np.float32))],
        "m",
    )["face_ids"]
    assert str(uuid.UUID(added[0])) == added[0]
    with pytest.raises(FaceNotFoundError):
        gallery.remove_face_by_id("18")
    assert gallery.version() > 9
    # Names are unique per collection now, not across the gallery.
    gallery.create_collection("other")
    gallery.add_person("Ada", collection="other")


def test_migrations_make_the_models_schema(engine: Engine) -> None:
    init_db(engine)
    init_db(engine)  # a second run finds nothing to do
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    assert differences == []


@pytest.mark.slow
def test_two_processes_migrating_at_once(database_url: str) -> None:
    script = (
        "import sys; from server.store.db import init_db, make_engine; "
        "init_db(make_engine(sys.argv[1]))"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, database_url],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for process in processes:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors
    engine = make_engine(database_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()
