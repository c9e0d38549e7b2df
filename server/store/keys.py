"""API keys and their quota: creation, lookup by hash, atomic reservation and refund.

A unit of quota is charged if and only if a result is stored (or an identical stored one is
answered), also across crashes: :meth:`KeyStore.reserve` takes the unit and records a
reservation row in one transaction; storing the result deletes that row in the result's own
transaction (:func:`settle`), a failure deletes it and gives the unit back
(:meth:`KeyStore.refund`). Whichever comes first wins, so a unit is never both kept and
given back. Rows left by a process that is gone (kill -9, power loss) or older than any
request can live are given back by :meth:`KeyStore.reclaim_abandoned`, which every server
runs at start and periodically.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, timedelta
from functools import cache
from pathlib import Path

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.errors import ApiError, ErrorKind, ModelUnavailableError
from server.store import audit
from server.store.db import ApiKey, QuotaReservation, utcnow

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Reservation:
    """One unit taken for one analysis. ``id`` None: the key is unlimited, nothing to settle."""

    key_id: int
    remaining: int | None  # quota left after this request (None: unlimited)
    id: int | None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _start_time(pid: int) -> str | None:
    """The process' start time in clock ticks since boot (field 22 of /proc/PID/stat), which
    tells a live process from a later one that reuses its pid; None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@cache
def _this_host() -> str:
    return f"{socket.gethostname()}/{_boot_id()}"


def process_owner(pid: int | None = None) -> str:
    """Names a process uniquely over time: host/boot id/pid/start time."""
    pid = os.getpid() if pid is None else pid
    return f"{_this_host()}/{pid}/{_start_time(pid) or '?'}"


def owner_is_gone(owner: str) -> bool:
    """True when ``owner`` ran on this host since its last boot and is no longer running.
    A process on another host (a shared PostgreSQL) is judged by its reservations' age."""
    parts = owner.rsplit("/", 2)
    if len(parts) != 3 or parts[0] != _this_host():
        return False
    pid, started = parts[1], parts[2]
    return not pid.isdigit() or _start_time(int(pid)) != started


def settle(connection: Connection, reservation: Reservation | None) -> None:
    """Keeps a reservation's unit charged, in the caller's transaction (the one that stores
    the result). A reservation already given back (taken for abandoned) fails the request
    instead: it is not stored, so it is not charged."""
    if reservation is None or reservation.id is None:
        return
    deleted = connection.execute(
        delete(QuotaReservation).where(QuotaReservation.id == reservation.id)
    ).rowcount
    if deleted != 1:
        raise ModelUnavailableError("request timed out, retry later", retry_after=1)


def hash_key(key: str) -> str:
    # Keys are 192 random bits, so a plain sha256 is enough; no salt or slow hash needed.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _record(row: ApiKey) -> KeyRecord:
    return KeyRecord(row.id, row.name, row.key_prefix, row.quota, row.is_admin, row.revoked)


class KeyStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def create(
        self,
        name: str,
        quota: int | None = None,
        is_admin: bool = False,
        *,
        actor: str = audit.CLI_ACTOR,
    ) -> str:
        """Creates a key and returns it; only its hash is kept (and the audit log names it,
        never its value). ``actor``: who asks (server/store/audit.py), for every change here."""
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
                session.flush()  # the name's uniqueness is checked before the log names it
                audit.record(
                    session, actor, audit.KEY_CREATED, name, {"quota": quota, "admin": is_admin}
                )
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

    def revoke(self, key_or_name: str, *, actor: str = audit.CLI_ACTOR) -> KeyRecord:
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
            # By name, also when revoked by its value: the log never holds a key.
            audit.record(session, actor, audit.KEY_REVOKED, row.name)
            return _record(row)

    def set_quota(
        self, name: str, quota: int | None, *, actor: str = audit.CLI_ACTOR
    ) -> KeyRecord:
        if quota is not None and quota < 0:
            raise KeyManagementError("quota must be >= 0")
        with Session(self.engine) as session, session.begin():
            row = session.scalars(select(ApiKey).where(ApiKey.name == name)).first()
            if row is None:
                raise KeyManagementError(f"no key named {name!r}")
            audit.record(
                session, actor, audit.KEY_QUOTA_SET, name, {"quota": quota, "was": row.quota}
            )
            row.quota = quota
            return _record(row)

    def reserve(self, key: KeyRecord) -> Reservation:
        """Takes one unit of quota before an analysis, atomically across threads and processes,
        and records the reservation in the same transaction.

        Raises 402 when nothing is left. The unit stays charged only if the analysis' result
        is stored (:func:`settle`); otherwise :meth:`refund` or, after a crash,
        :meth:`reclaim_abandoned` gives it back.
        """
        if key.quota is None:
            # Re-read: an operator may have set a quota since the key was authenticated.
            current = self._quota(key.id)
            if current is None:
                return Reservation(key.id, None, None)
        with self.engine.begin() as conn:
            row = conn.execute(
                update(ApiKey)
                .where(ApiKey.id == key.id, ApiKey.quota.is_not(None), ApiKey.quota > 0)
                .values(quota=ApiKey.quota - 1)
                .returning(ApiKey.quota)
            ).first()
            if row is not None:
                reservation_id = conn.execute(
                    insert(QuotaReservation)
                    .values(key_id=key.id, owner=process_owner(), reserved_at=utcnow())
                    .returning(QuotaReservation.id)
                ).scalar_one()
        if row is None:
            if self._quota(key.id) is None:
                return Reservation(key.id, None, None)
            raise ApiError(ErrorKind.QUOTA_REACHED)
        return Reservation(key.id, int(row[0]), int(reservation_id))

    def refund(self, reservation: Reservation) -> bool:
        """Gives a reservation's unit back, unless its result was stored (or it was given
        back already): True when it was."""
        if reservation.id is None:
            return False
        with self.engine.begin() as conn:
            return self._give_back(conn, reservation.id, reservation.key_id)

    def settle(self, reservation: Reservation) -> None:
        """Keeps the unit charged without storing a result (an identical stored one answered)."""
        with self.engine.begin() as conn:
            settle(conn, reservation)

    @staticmethod
    def _give_back(conn: Connection, reservation_id: int, key_id: int) -> bool:
        deleted = conn.execute(
            delete(QuotaReservation).where(QuotaReservation.id == reservation_id)
        ).rowcount
        if deleted == 1:
            conn.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.quota.is_not(None))
                .values(quota=ApiKey.quota + 1)
            )
        return deleted == 1

    def reclaim_abandoned(self, older_than_s: float) -> int:
        """Gives back the units of reservations whose process is gone, or that are older than
        ``older_than_s`` (longer than any request lives). Returns how many."""
        oldest = utcnow() - timedelta(seconds=older_than_s)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(QuotaReservation.id, QuotaReservation.key_id, QuotaReservation.owner,
                       QuotaReservation.reserved_at)
            ).all()
        gone: dict[str, bool] = {}
        reclaimed = 0
        for reservation_id, key_id, owner, reserved_at in rows:
            if reserved_at.tzinfo is None:  # SQLite hands back naive UTC datetimes
                reserved_at = reserved_at.replace(tzinfo=UTC)
            if owner not in gone:
                gone[owner] = owner_is_gone(owner)
            if gone[owner] or reserved_at < oldest:
                with self.engine.begin() as conn:
                    reclaimed += self._give_back(conn, reservation_id, key_id)
        if reclaimed:
            log.info("gave back %d quota units of analyses that never finished", reclaimed)
        return reclaimed

    def remaining(self, key: KeyRecord) -> int | None:
        return self._quota(key.id)

    def _quota(self, key_id: int) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(ApiKey.quota).where(ApiKey.id == key_id)).scalar_one()
