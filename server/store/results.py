"""Stored analysis results: answers for type=cache and for repeated identical analyses.
Only results and image metadata are stored, never the images; with storing off
(IMAGERECOGNIZE_STORE_RESULTS=false) nothing at all. Results older than the retention are
neither listed nor reused, and deleted by :meth:`ResultStore.purge_expired` (the server runs
it periodically); :meth:`ResultStore.purge` and :meth:`ResultStore.delete` delete on demand,
audited."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from models.base import Analysis, ModelId
from models.images import ImageInfo
from server.store import audit
from server.store.db import ApiKey, StoredResult, utcnow
from server.store.keys import KeyManagementError, Reservation, settle


def lookup_hash(
    key_id: int, image_sha256: str, type_: str, params: dict[str, Any], model: ModelId
) -> str:
    """Identifies an analysis: same key, image bytes, type, parameters and model version."""
    identity = json.dumps(
        [key_id, image_sha256, type_, params, model.name, model.version], sort_keys=True
    )
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def _iso(moment: datetime) -> str:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def to_cache_entry(row: StoredResult) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "created": _iso(row.created_at),
        "image": {
            "sha256": row.image_sha256,
            "width": row.image_width,
            "height": row.image_height,
            "format": row.image_format,
        },
        "params": row.params,
        "model": {"name": row.model_name, "version": row.model_version},
        "objects": row.objects,
        **(row.extra or {}),
    }


class ResultStore:
    def __init__(
        self,
        engine: Engine,
        retention_days: float,
        *,
        storing: bool = True,
        clock: Callable[[], datetime] = utcnow,
    ):
        """``storing`` False: nothing is stored, listed or reused; ``clock``: the time that
        stamps results and decides their age (UTC, aware; a test's own clock)."""
        self.engine = engine
        self.retention_days = retention_days
        self.retention = timedelta(days=retention_days)
        self.storing = storing
        self.clock = clock

    def _oldest_kept(self) -> datetime:
        return self.clock() - self.retention

    def find_identical(self, key_id: int, lookup: str) -> StoredResult | None:
        if not self.storing:
            return None
        with Session(self.engine, expire_on_commit=False) as session:
            return session.scalars(
                select(StoredResult)
                .where(
                    StoredResult.key_id == key_id,
                    StoredResult.lookup_hash == lookup,
                    StoredResult.created_at >= self._oldest_kept(),
                )
                .order_by(StoredResult.created_at.desc())
                .limit(1)
            ).first()

    def save(
        self,
        key_id: int,
        type_: str,
        info: ImageInfo,
        params: dict[str, Any],
        model: ModelId,
        result: Analysis,
        lookup: str,
        reservation: Reservation | None = None,
    ) -> str | None:
        """Stores a result and returns its id; with ``reservation``, its quota unit is kept
        charged in the same transaction (so that a unit is charged if and only if its result
        is stored). With storing off only the unit is kept charged, and the id is None."""
        if not self.storing:
            with self.engine.begin() as connection:
                settle(connection, reservation)
            return None
        result_id = uuid.uuid4().hex
        with Session(self.engine) as session, session.begin():
            settle(session.connection(), reservation)
            session.add(
                StoredResult(
                    id=result_id,
                    key_id=key_id,
                    created_at=self.clock(),
                    type=type_,
                    image_sha256=info.sha256,
                    image_width=info.width,
                    image_height=info.height,
                    image_format=info.format,
                    params=params,
                    model_name=model.name,
                    model_version=model.version,
                    objects=result.objects,
                    extra=result.extra or None,
                    lookup_hash=lookup,
                )
            )
        return result_id

    def recent(self, key_id: int, limit: int) -> list[dict[str, Any]]:
        if not self.storing:
            return []
        with Session(self.engine) as session:
            rows = session.scalars(
                select(StoredResult)
                .where(
                    StoredResult.key_id == key_id,
                    StoredResult.created_at >= self._oldest_kept(),
                )
                .order_by(StoredResult.created_at.desc(), StoredResult.id)
                .limit(limit)
            )
            return [to_cache_entry(r) for r in rows]

    def one(self, key_id: int, result_id: str) -> dict[str, Any] | None:
        if not self.storing:
            return None
        with Session(self.engine) as session:
            row = session.scalars(
                select(StoredResult).where(
                    StoredResult.key_id == key_id,
                    StoredResult.id == result_id,
                    StoredResult.created_at >= self._oldest_kept(),
                )
            ).first()
            return None if row is None else to_cache_entry(row)

    def purge_expired(self) -> int:
        """Deletes every result older than the retention; how many. Audited when any were."""
        oldest = self._oldest_kept()
        with self.engine.begin() as conn:
            removed = conn.execute(
                delete(StoredResult).where(StoredResult.created_at < oldest)
            ).rowcount
            if removed:
                audit.record(
                    conn,
                    audit.SERVER_ACTOR,
                    audit.RESULTS_EXPIRED,
                    details={"deleted": removed, "retention_days": self.retention_days},
                    at=self.clock(),
                )
        return removed

    def purge(
        self,
        *,
        key_name: str | None = None,
        older_than_days: float | None = None,
        actor: str = audit.CLI_ACTOR,
    ) -> int:
        """Deletes the stored results of the key named ``key_name`` (every key's when None)
        older than ``older_than_days`` (any age when None); how many. Audited."""
        if older_than_days is not None and older_than_days < 0:
            raise KeyManagementError("--older-than must be >= 0 days")
        with self.engine.begin() as conn:
            query = delete(StoredResult)
            if key_name is not None:
                key_id = conn.execute(
                    select(ApiKey.id).where(ApiKey.name == key_name)
                ).scalar_one_or_none()
                if key_id is None:
                    raise KeyManagementError(f"no key named {key_name!r}")
                query = query.where(StoredResult.key_id == key_id)
            if older_than_days is not None:
                cutoff = self.clock() - timedelta(days=older_than_days)
                query = query.where(StoredResult.created_at < cutoff)
            removed = conn.execute(query).rowcount
            audit.record(
                conn,
                actor,
                audit.RESULTS_PURGED,
                key_name,
                details={"key": key_name, "older_than_days": older_than_days, "deleted": removed},
                at=self.clock(),
            )
        return removed

    def delete(self, key_id: int, result_id: str, *, actor: str) -> bool:
        """Deletes one of this key's stored results (another key's is never touched): True
        when there was one. Audited."""
        with self.engine.begin() as conn:
            removed = conn.execute(
                delete(StoredResult).where(
                    StoredResult.key_id == key_id, StoredResult.id == result_id
                )
            ).rowcount
            if removed:
                audit.record(conn, actor, audit.RESULT_DELETED, result_id, at=self.clock())
        return removed == 1
