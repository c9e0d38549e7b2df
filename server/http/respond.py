"""What every route's answer has in common: the API's envelope, one mapping of errors to
status codes (server/errors.py), and an ``X-Request-Id`` header that names the request in the
log."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import ApiError, ErrorKind, api_error
from server.http.state import get_state
from server.telemetry.requests import note_answer

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
# Answers may carry results and keys' data: never sniffed as another type, never cached.
NO_SNIFF_NO_STORE = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def envelope(
    status: int, message: str, data: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The API's body, with the HTTP status equal to ``status``."""
    return JSONResponse(
        {"status": status, "status_message": message, "data": data},
        status_code=status,
        headers={**NO_SNIFF_NO_STORE, **(headers or {})},
    )


def error_response(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return envelope(error.status, error.status_message, None, headers)


def request_id(request: Request) -> str:
    return request.scope["state"]["request_id"]


async def respond(request: Request, work: Callable[[], Awaitable[Any]]) -> JSONResponse:
    """``work()``'s result as a 200, or its error in the API's terms. The body of a 500 never
    carries exception text; the log has it under the request id."""
    with get_state(request).trimmer.request():
        try:
            data = await work()
            note_answer(data)  # type, model, stored or computed: for the access log
            return envelope(200, "OK", data)
        except ClientDisconnect:
            log.info("request %s: client left during its upload", request_id(request))
            return error_response(ApiError(ErrorKind.CLIENT_CLOSED))
        except Exception as exc:
            error = api_error(exc)
            if error is None:
                log.exception("request %s failed", request_id(request))
                error = ApiError(ErrorKind.INTERNAL)
            elif error.kind is ErrorKind.CLIENT_CLOSED:
                log.info(
                    "request %s: client left before its answer; dropped, refunded",
                    request_id(request),
                )
            return error_response(error)


class RequestIdMiddleware:
    """Gives every request an id and every answer its ``X-Request-Id`` header (a plain ASGI
    middleware: it leaves the request's body stream and disconnect events alone)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        header = (REQUEST_ID_HEADER.lower().encode(), rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
