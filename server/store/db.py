"""The database: API keys with their quota, stored analysis results, the gallery, the audit
log.

Portable SQLAlchemy only (no SQLite-only SQL), so any SQLAlchemy URL works; PostgreSQL and
SQLite are the tested ones. The schema is made and changed by the Alembic migrations in
`server/store/migrations/`; `init_db` upgrades a database to the newest one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    # sha256 of the key; the key itself is shown once, at creation, and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False, index=True)
    key_prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    # Remaining analyses; NULL means unlimited.
    quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    revoked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class QuotaReservation(Base):
    """One unit of a key's quota taken for an analysis in flight. Deleted in the transaction
    that stores the analysis' result (the unit stays charged) or gives the unit back; a row
    whose owner process is gone, or that is older than any request can live, is abandoned
    and its unit given back (server/store/keys.py)."""

    __tablename__ = "quota_reservations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[int] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # The server process that took it: host/boot id/pid/start time (server/store/keys.py).
    owner: Mapped[str] = mapped_column(String(200), nullable=False)
    reserved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StoredResult(Base):
    __tablename__ = "results"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[int] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False, index=True
    )
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    image_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    image_width: Mapped[int] = mapped_column(Integer, nullable=False)
    image_height: Mapped[int] = mapped_column(Integer, nullable=False)
    image_format: Mapped[str] = mapped_column(String(8), nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    model_name: Mapped[str] = mapped_column(String(100), nullable=False)
    model_version: Mapped[str] = mapped_column(String(100), nullable=False)
    objects: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    # Fields the type adds beside objects (detect_text's text, celebrities' unrecognized).
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # sha256 over (key, image, type, params, model): finds an identical earlier analysis.
    lookup_hash: Mapped[str] = mapped_column(String(64), nullable=False, index=True)


class Collection(Base):
    """A named set of people in the gallery; the one named "default" is the gallery that the
    v2, DeepStack and CompreFace APIs use, made by migration 0004 and never deleted."""

    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The gallery_state counter as of this collection's last change of descriptors: never the
    # same for two different contents, even across collections deleted and made again.
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class Person(Base):
    """Someone the operator enrolled in the gallery of known people; names are unique within
    a collection."""

    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("collection_id", "name", name="uq_people_collection_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GalleryFace(Base):
    """One enrolled face: its aligned crop (the operator's own data, kept so that descriptors
    can be recomputed after a model switch) and where it came from."""

    __tablename__ = "gallery_faces"

    # Internal (descriptors point to it); SQLite may hand it out again after a delete.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The id clients see: a UUID, never issued twice; faces from before migration 0004 keep
    # their old integer id as text ("17"), which no UUID can equal.
    public_id: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    person_id: Mapped[int] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), nullable=False, index=True
    )
    source: Mapped[str] = mapped_column(String(500), nullable=False)
    aligned_png: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Where the face came from, where known (NULL for faces from before migration 0004): a
    # UUID naming the input image, the client's own name for it, the detector's box as
    # ratios of the image's width and height, and the detector's probability (0..1).
    image_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    external_image_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    box_left: Mapped[float | None] = mapped_column(Float, nullable=True)
    box_top: Mapped[float | None] = mapped_column(Float, nullable=True)
    box_width: Mapped[float | None] = mapped_column(Float, nullable=True)
    box_height: Mapped[float | None] = mapped_column(Float, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)


class FaceDescriptor(Base):
    """A face's descriptor by one model; descriptors of different models never mix."""

    __tablename__ = "face_descriptors"
    __table_args__ = (UniqueConstraint("face_id", "model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    face_id: Mapped[int] = mapped_column(
        ForeignKey("gallery_faces.id", ondelete="CASCADE"), nullable=False, index=True
    )
    model: Mapped[str] = mapped_column(String(100), nullable=False, index=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # float32, little-endian


class AuditEntry(Base):
    """One change to who may use the server or whom it recognises: a key created, revoked or
    given a quota, a person enrolled or removed, stored results deleted. Written in the
    transaction of the change itself (server/store/audit.py); never holds a key, its hash or
    an image."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    # "cli" (the operator's command line), "server" (retention) or "key:NAME" (over the API).
    actor: Mapped[str] = mapped_column(String(220), nullable=False, index=True)
    action: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    # What it was done to: a key's or a person's name, a result's id; NULL for a purge.
    subject: Mapped[str | None] = mapped_column(String(500), nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class GalleryState(Base):
    """One row whose counter grows with every gallery change, so that each server process
    knows when its in-memory copy of the descriptors is stale. Every gallery change updates
    it first: that row lock (SQLite: the write lock) makes gallery changes one at a time, so
    that a change reads what the previous one wrote (server/store/gallery.py)."""

    __tablename__ = "gallery_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so that several threads and
    server processes can write to one file."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            # Created owner-only before SQLite creates it 0644 (its -wal and -shm files take
            # the database file's mode): it holds key hashes, results and face crops.
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            # WAL with NORMAL sync: no corruption on power loss, only the last commits may
            # be lost; a full fsync per request would cost more than some models.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


MIGRATIONS = "server.store:migrations"
# Any constant: the PostgreSQL advisory lock that lets one process at a time migrate.
MIGRATION_LOCK_ID = 7_146_523_001


def _sqlite_path(engine: Engine) -> Path | None:
    database = engine.url.database
    return Path(database) if database and database != ":memory:" else None


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Across processes on one SQLite file: a lock file beside it (SQLite runs DDL outside
    transactions through Python's driver, so its own locks cannot cover a migration)."""
    path = _sqlite_path(engine) if engine.dialect.name == "sqlite" else None
    if path is None:
        yield
        return
    lock = path.with_name(path.name + ".migrate-lock")
    # The owner's only, like the database beside it.
    with os.fdopen(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    if connection.dialect.name == "postgresql":
        # Held until this transaction ends: a second process waits here, then finds the
        # schema current and does nothing.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def open_database(database_url: str) -> Engine:
    """The engine of ``database_url`` with its schema brought to the newest migration: how
    every command, the server and the analysis engines open the database."""
    engine = make_engine(database_url)
    init_db(engine)
    return engine


def init_db(engine: Engine) -> None:
    """Brings the schema to the newest migration, keeping every row; a database made before
    migrations existed is taken as it is. Safe when several processes do it at once."""
    with _migration_lock(engine), engine.begin() as connection:
        _upgrade(connection)
