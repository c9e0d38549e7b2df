"""The v2 API's envelope, ``{"status", "status_message", "data"}``: written here once, for
the routes (server/http/respond.py) and for the layers that answer before any route (the
protocol's limits, draining, CORS, the metrics' token)."""

from __future__ import annotations

import json
from typing import Any

# Answers may carry results and keys' data: never sniffed as another type, never cached.
NO_SNIFF_NO_STORE = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def envelope_body(status: int, message: str, data: Any = None) -> dict[str, Any]:
    return {"status": status, "status_message": message, "data": data}


def envelope_bytes(status: int, message: str) -> bytes:
    """An error's body, for answers written below the framework (no data)."""
    return json.dumps(envelope_body(status, message)).encode()
