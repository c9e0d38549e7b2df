"""One record per HTTP request: what the access log line and the request metrics say.

The middleware opens the record (server/telemetry/requests.py); lower layers add what only
they know (the type from the upload, the model's batch size, whether the answer was stored or
computed). Neither the key nor the query string nor any body is ever recorded.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.catalog import ALL_TYPES
from server.http.envelope import envelope_bytes
from server.ops.drain import Drain
from server.telemetry import metrics, requests
from server.telemetry.logs import printable
from server.telemetry.requests import RequestRecord

access_log = logging.getLogger("imagerecognize.access")

API_PREFIX = "/api/v2"
GALLERY_PREFIX = "/api/v2/gallery"
# The other APIs' paths, counted in the metrics as /api/v2/'s are (docs/compat.md).
DEEPSTACK_PREFIX = "/v1/"
GALLERY_TYPE = "gallery"
# Probes and scrapes: never refused while draining, not counted as work in flight, and
# logged at DEBUG when they succeed (a probe every few seconds would drown the log).
PROBE_PATHS = frozenset({"/livez", "/readyz", "/health", "/metrics"})
_KNOWN_TYPES = frozenset(ALL_TYPES)


def type_label(record: RequestRecord) -> str:
    """The type as a metric label: only names the server knows (bounded cardinality)."""
    if record.path.startswith(GALLERY_PREFIX) or record.type == GALLERY_TYPE:
        return GALLERY_TYPE
    return record.type if record.type in _KNOWN_TYPES else "unknown"


def format_text(fields: dict[str, Any]) -> str:
    """``request <id> POST /api/v2/ type=objects status=200 ms=81.2 ...`` (set fields only),
    each value printable: what a client sent (path, type) never forges or breaks a line."""
    head = printable(f"request {fields['request_id']} {fields['method']} {fields['path']}")
    rest = " ".join(
        printable(f"{name}={value}")
        for name, value in fields.items()
        if name not in ("request_id", "method", "path") and value is not None
    )
    return f"{head} {rest}"


async def _refuse_draining(send: Send) -> None:
    body = envelope_bytes(503, "Service unavailable: server shutting down")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ObservabilityMiddleware:
    """Times every request, counts API requests in the metrics, writes one access log line,
    and while the server drains answers new requests 503 (nothing done, nothing charged: a
    client or proxy may retry them elsewhere) and counts those still in flight."""

    def __init__(self, app: ASGIApp, drain: Drain):
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        state = scope.setdefault("state", {})
        record = RequestRecord(state.get("request_id", "-"), scope["method"], path)
        token = requests.current.set(record)

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        probe = path in PROBE_PATHS
        try:
            if self.drain.draining and not probe:
                await _refuse_draining(send_recorded)
            else:
                with contextlib.nullcontext() if probe else self.drain.in_flight():
                    await self.app(scope, receive, send_recorded)
        finally:
            requests.current.reset(token)
            self._record(record, time.perf_counter() - started, probe)

    @staticmethod
    def _record(record: RequestRecord, seconds: float, probe: bool) -> None:
        status = record.status if record.status is not None else 500
        record.status = status
        if record.path.startswith((API_PREFIX, DEEPSTACK_PREFIX)):
            label = type_label(record)
            metrics.REQUESTS.labels(label, str(status)).inc()
            metrics.REQUEST_DURATION.labels(label).observe(seconds)
        level = logging.DEBUG if probe and status < 400 else logging.INFO
        if access_log.isEnabledFor(level):
            fields = record.fields(seconds * 1000.0)
            access_log.log(level, format_text(fields), extra=fields)
