"""Cross-origin access for browser clients (a customer's page calling the API from its own
site, as the original service's JavaScript example does).

Any origin by default, never with credentials: keys travel in the form, not in cookies, so
a page of another site can only use a key it was given. Preflights are answered by
Starlette's CORSMiddleware. With a list of origins, a request that a browser sends from
another origin (it carries an ``Origin`` header) is refused with 403 before any work: a
browser would hide the answer from the page, but the analysis would still run and take quota.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import ErrorKind
from server.http.content_type import API_PREFIX, ApiContentType
from server.http.envelope import envelope_body
from server.settings import Settings

EXPOSED_HEADERS = ["Retry-After", "X-Request-Id"]


class ForeignOriginGuard:
    """403 for API requests from origins that are neither listed nor this server's own."""

    def __init__(self, app: ASGIApp, allowed: set[str]):
        self.app = app
        self.allowed = {origin.rstrip("/") for origin in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            headers = {name: value.decode("latin-1") for name, value in scope["headers"]}
            origin = headers.get(b"origin")
            if origin and origin not in self.allowed and not _same_host(origin, headers):
                kind = ErrorKind.FORBIDDEN
                message = f"{kind.message}: origin {origin} is not allowed"
                response = JSONResponse(
                    envelope_body(kind.status, message),
                    status_code=kind.status,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _same_host(origin: str, headers: dict[bytes, str]) -> bool:
    # The page at / posts with an Origin header too; behind a TLS proxy the scheme differs,
    # so only the host and port are compared with the Host the browser sent.
    return urlsplit(origin).netloc.lower() == headers.get(b"host", "").lower()


def install_browser_middleware(app: FastAPI, settings: Settings) -> None:
    """The API's content type negotiation, and cross-origin access as configured."""
    origins = list(settings.cors_allow_origins)
    # Added innermost first: CORS ends up outermost, so preflights never reach the app.
    if "*" not in origins:
        app.add_middleware(ForeignOriginGuard, allowed=set(origins))
    app.add_middleware(ApiContentType)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=600,
        )
