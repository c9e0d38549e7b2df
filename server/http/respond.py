"""What every dialect's answers have in common: one route class per dialect that turns any
error its routes raise into that dialect's error answer (``dialect_route``), the one
translation of exceptions into the API's errors (``answered_error``), the v2 envelope, and an
``X-Request-Id`` header that names the request in the log."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import ApiError, ErrorKind, api_error
from server.http.envelope import NO_SNIFF_NO_STORE, envelope_body
from server.http.state import get_state
from server.telemetry.requests import note_answer

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"

__all__ = [
    "NO_SNIFF_NO_STORE",
    "answered_error",
    "dialect_route",
    "envelope",
    "error_response",
    "ok",
    "request_id",
]

ErrorAnswer = Callable[[Request, Exception], Response]


def request_id(request: Request) -> str:
    return request.scope["state"]["request_id"]


def answered_error(request: Request, exc: Exception) -> ApiError:
    """What a client is told of an exception, in the API's terms: the error table's entry
    (server/errors.py), or a 500 that carries no exception text (the log has it under the
    request id)."""
    if isinstance(exc, ClientDisconnect):
        log.info("request %s: client left during its upload", request_id(request))
        return ApiError(ErrorKind.CLIENT_CLOSED)
    error = api_error(exc)
    if error is None:
        log.exception("request %s failed", request_id(request), exc_info=exc)
        return ApiError(ErrorKind.INTERNAL)
    if error.kind is ErrorKind.CLIENT_CLOSED:
        log.info(
            "request %s: client left before its answer; dropped, refunded", request_id(request)
        )
    return error


def dialect_route(error_answer: ErrorAnswer) -> type[APIRoute]:
    """The route class of one API dialect: its routes raise, and ``error_answer`` writes
    every error they raise (their dependencies' too) in the dialect's terms. Routes return
    their own success answers."""

    class DialectRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def answer(request: Request) -> Response:
                with get_state(request).trimmer.request():
                    try:
                        return await handler(request)
                    except (RequestValidationError, StarletteHTTPException):
                        raise  # the app's handlers answer these, as for any route
                    except Exception as exc:
                        return error_answer(request, exc)

            return answer

    return DialectRoute


# --- the v2 API's answers ------------------------------------------------------------------


def envelope(
    status: int, message: str, data: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The API's body, with the HTTP status equal to ``status``."""
    return JSONResponse(
        envelope_body(status, message, data),
        status_code=status,
        headers={**NO_SNIFF_NO_STORE, **(headers or {})},
    )


def ok(data: Any) -> JSONResponse:
    """A v2 route's success."""
    note_answer(data)  # type, model, stored or computed: for the access log
    return envelope(200, "OK", data)


def error_response(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return envelope(error.status, error.status_message, None, headers)


def v2_error(request: Request, exc: Exception) -> Response:
    return error_response(answered_error(request, exc))


V2Route = dialect_route(v2_error)


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
