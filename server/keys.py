"""API keys and their quota: creation, lookup by hash, atomic reservation and refund."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db import ApiKey
from server.errors import ApiError, ErrorKind

KEY_PREFIX = "ir_"


class KeyManagementError(Exception):
    """A key management command that cannot be carried out (CLI message)."""


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    key_prefix: str
    quota: int | None
    is_admin: bool
    revoked: bool


def hash_key(key: str) -> str:
    # Keys are 192 random bits, so a plain sha256 is enough; no salt or slow hash needed.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _record(row: ApiKey) -> KeyRecord:
    return KeyRecord(row.id, row.name, row.key_prefix, row.quota, row.is_admin, row.revoked)


class KeyStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def create(self, name: str, quota: int | None = None, is_admin: bool = False) -> str:
        """Creates a key and returns it; only its hash is kept."""
        if quota is not None and quota < 0:
            raise KeyManagementError("quota must be >= 0")
        key = KEY_PREFIX + secrets.token_urlsafe(24)
        row = ApiKey(
            name=name,
            key_hash=hash_key(key),
            key_prefix=key[:8],
            quota=quota,
            is_admin=is_admin,
        )
        try:
            with Session(self.engine) as session, session.begin():
                session.add(row)
        except IntegrityError as exc:
            raise KeyManagementError(f"a key named {name!r} already exists") from exc
        return key

    def authenticate(self, key: str) -> KeyRecord | None:
        """The active key with this value, or None when unknown or revoked."""
        with Session(self.engine) as session:
            row = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
            if row is None or row.revoked:
                return None
            return _record(row)

    def list(self) -> list[KeyRecord]:
        with Session(self.engine) as session:
            return [_record(r) for r in session.scalars(select(ApiKey).order_by(ApiKey.id))]

    def find(self, name: str) -> KeyRecord | None:
        with Session(self.engine) as session:
            row = session.scalars(select(ApiKey).where(ApiKey.name == name)).first()
            return None if row is None else _record(row)

    def revoke(self, key_or_name: str) -> KeyRecord:
        with Session(self.engine) as session, session.begin():
            row = session.scalars(
                select(ApiKey).where(
                    (ApiKey.name == key_or_name) | (ApiKey.key_hash == hash_key(key_or_name))
                )
            ).first()
            if row is None:
                raise KeyManagementError(f"no key named {key_or_name!r}")
            if row.revoked:
                raise KeyManagementError(f"key {row.name!r} is already revoked")
            row.revoked = True
            return _record(row)

    def set_quota(self, name: str, quota: int | None) -> KeyRecord:
        if quota is not None and quota < 0:
            raise KeyManagementError("quota must be >= 0")
        with Session(self.engine) as session, session.begin():
            row = session.scalars(select(ApiKey).where(ApiKey.name == name)).first()
            if row is None:
                raise KeyManagementError(f"no key named {name!r}")
            row.quota = quota
            return _record(row)

    def reserve(self, key: KeyRecord) -> int | None:
        """Takes one unit of quota before an analysis, atomically across threads and processes.

        Returns what is left (None: unlimited); raises 402 when nothing is left. A failed
        analysis gives its unit back with :meth:`refund`, so only successes are charged.
        """
        if key.quota is None:
            # Re-read: an operator may have set a quota since the key was authenticated.
            current = self._quota(key.id)
            if current is None:
                return None
        with self.engine.begin() as conn:
            row = conn.execute(
                update(ApiKey)
                .where(ApiKey.id == key.id, ApiKey.quota.is_not(None), ApiKey.quota > 0)
                .values(quota=ApiKey.quota - 1)
                .returning(ApiKey.quota)
            ).first()
        if row is None:
            if self._quota(key.id) is None:
                return None
            raise ApiError(ErrorKind.QUOTA_REACHED)
        return int(row[0])

    def refund(self, key: KeyRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(ApiKey)
                .where(ApiKey.id == key.id, ApiKey.quota.is_not(None))
                .values(quota=ApiKey.quota + 1)
            )

    def remaining(self, key: KeyRecord) -> int | None:
        return self._quota(key.id)

    def _quota(self, key_id: int) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(ApiKey.quota).where(ApiKey.id == key_id)).scalar_one()
