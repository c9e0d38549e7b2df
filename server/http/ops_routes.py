"""Routes for operators: /livez, /readyz (server/ops/health.py), /metrics (telemetry)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from server.http.envelope import envelope_body
from server.http.state import State
from server.ops.health import Readiness
from server.telemetry import metrics

router = APIRouter(include_in_schema=False)

NO_STORE = {"Cache-Control": "no-store"}


def get_readiness(request: Request) -> Readiness:
    return request.app.state.readiness


@router.get("/livez")
async def livez() -> JSONResponse:
    """The process is up and its event loop answers."""
    return JSONResponse({"status": "alive"}, headers=NO_STORE)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    ready, body = await get_readiness(request).check()
    return JSONResponse(body, status_code=200 if ready else 503, headers=NO_STORE)


@router.get("/metrics")
async def metrics_text(request: Request, state: State) -> Response:
    token = state.settings.metrics_token
    if token:
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return JSONResponse(
                envelope_body(401, "Unauthorized: send Authorization: Bearer"),
                status_code=401,
                headers={**NO_STORE, "WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type, headers=NO_STORE)
