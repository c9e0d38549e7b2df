"""The record of the HTTP request being answered, which lower layers annotate.

The HTTP middleware opens one per request (``current``); the pipeline notes the batch size
its model call had, the routes the type, the answer the model. A context variable, so the
pipeline reports without knowing HTTP. Neither the key nor the query string nor any body is
ever recorded.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass
class RequestRecord:
    request_id: str
    method: str
    path: str
    type: str | None = None
    status: int | None = None
    model: str | None = None
    batch_size: int | None = None
    stored: bool | None = None  # answered from a stored result (True) or computed

    def fields(self, duration_ms: float) -> dict[str, Any]:
        result = None if self.stored is None else ("stored" if self.stored else "computed")
        return {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "type": self.type,
            "status": self.status,
            "ms": round(duration_ms, 1),
            "model": self.model,
            "batch_size": self.batch_size,
            "result": result,
        }


current: ContextVar[RequestRecord | None] = ContextVar("imagerecognize_request", default=None)


def note_type(type_: str | None) -> None:
    """The type the request asked for (before any check)."""
    if (record := current.get()) is not None and type_:
        record.type = type_.strip()[:40]


def note_batch(size: int) -> None:
    if (record := current.get()) is not None:
        record.batch_size = size


def note_answer(data: Any) -> None:
    """What a 200's ``data`` says about the analysis: type, model, stored or computed."""
    record = current.get()
    if record is None or not isinstance(data, dict):
        return
    if isinstance(data.get("type"), str):
        record.type = data["type"]
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("name"), str):
        record.model = model["name"]
    if isinstance(data.get("cached"), bool):
        record.stored = data["cached"]
