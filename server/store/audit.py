"""The audit log: every change to who may use the server (keys created, revoked, given a
quota) or whom it recognises (people enrolled and removed), and every deletion of stored
results, with who did it and when.

The stores write it themselves, in the transaction of the change (a change is never without
its entry, nor an entry without its change), so that every caller is audited: the CLI, the
HTTP routes, any later API dialect. An entry names keys and people, never a key's value or
hash, and never holds an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from server.store.db import AuditEntry, utcnow

# Who did it: the operator's command line, the server itself (retention), or a key over the
# API (api_actor).
CLI_ACTOR = "cli"
SERVER_ACTOR = "server"

# What was done.
KEY_CREATED = "key.create"
KEY_REVOKED = "key.revoke"
KEY_QUOTA_SET = "key.set_quota"
PERSON_ENROLLED = "gallery.enrol"
PERSON_REMOVED = "gallery.remove_person"
FACE_REMOVED = "gallery.remove_face"
PERSON_ADDED = "gallery.add_person"
PERSON_RENAMED = "gallery.rename_person"
GALLERY_EMPTIED = "gallery.remove_everyone"
COLLECTION_CREATED = "gallery.create_collection"
COLLECTION_DELETED = "gallery.delete_collection"
RESULTS_PURGED = "results.purge"
RESULTS_EXPIRED = "results.expire"
RESULT_DELETED = "results.delete"
ACTIONS = (
    KEY_CREATED,
    KEY_REVOKED,
    KEY_QUOTA_SET,
    PERSON_ENROLLED,
    PERSON_REMOVED,
    FACE_REMOVED,
    PERSON_ADDED,
    PERSON_RENAMED,
    GALLERY_EMPTIED,
    COLLECTION_CREATED,
    COLLECTION_DELETED,
    RESULTS_PURGED,
    RESULTS_EXPIRED,
    RESULT_DELETED,
)
MAX_SUBJECT_CHARS = 500  # AuditEntry.subject


def api_actor(key_name: str) -> str:
    """The actor of a change made over the API with the key named ``key_name``."""
    return f"key:{key_name}"


def record(
    executor: Session | Connection,
    actor: str,
    action: str,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Adds an entry in ``executor``'s transaction (the one making the change)."""
    assert action in ACTIONS, action
    executor.execute(
        insert(AuditEntry).values(
            at=at or utcnow(),
            actor=actor,
            action=action,
            subject=None if subject is None else subject[:MAX_SUBJECT_CHARS],
            details=details or None,
        )
    )


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime  # UTC
    actor: str
    action: str
    subject: str | None
    details: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": self.details,
        }


class AuditLog:
    """Reads the log (writing is :func:`record`, by the stores)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def entries(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> list[AuditRecord]:
        """The newest ``limit`` entries that match every filter given, newest first."""
        query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        if action is not None:
            query = query.where(AuditEntry.action == action)
        if actor is not None:
            query = query.where(AuditEntry.actor == actor)
        if subject is not None:
            query = query.where(AuditEntry.subject == subject)
        if since is not None:
            query = query.where(AuditEntry.at >= since)
        with Session(self.engine) as session:
            rows = session.scalars(query.limit(limit)).all()
            return [
                AuditRecord(
                    row.id,
                    # SQLite hands back naive datetimes; every stored time is UTC.
                    row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC),
                    row.actor,
                    row.action,
                    row.subject,
                    row.details,
                )
                for row in rows
            ]
