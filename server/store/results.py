"""Stored analysis results: answers for type=cache and for repeated identical analyses.
Only results and image metadata are stored, never the images."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from models.base import Analysis, ModelId
from models.images import ImageInfo
from server.store.db import StoredResult, utcnow
from server.store.keys import Reservation, settle


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
    def __init__(self, engine: Engine, retention_days: float):
        self.engine = engine
        self.retention = timedelta(days=retention_days)

    def _oldest_kept(self) -> datetime:
        return utcnow() - self.retention

    def find_identical(self, key_id: int, lookup: str) -> StoredResult | None:
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
    ) -> str:
        """Stores a result; with ``reservation``, its quota unit is kept charged in the same
        transaction (so that a unit is charged if and only if its result is stored)."""
        result_id = uuid.uuid4().hex
        with Session(self.engine) as session, session.begin():
            settle(session.connection(), reservation)
            session.add(
                StoredResult(
                    id=result_id,
                    key_id=key_id,
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
        with self.engine.begin() as conn:
            return conn.execute(
                delete(StoredResult).where(StoredResult.created_at < self._oldest_kept())
            ).rowcount
