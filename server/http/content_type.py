"""The media type of the API's answers, chosen from the request's Accept header.

The original service's own JavaScript example calls ``JSON.parse(response)`` on what jQuery
hands its success handler. jQuery parses a body itself when its Content-Type names JSON and
passes it on as a string when the type is text/plain (or text/html), so the example only works
with a text type. Clients that ask for JSON (``Accept: application/json``) get
``application/json``; ``requests``' ``r.json()`` and ``fetch().json()`` parse either.
text/plain rather than text/html: an answer carries text read from images and echoed field
names, which a browser must never render as a page of this server's origin.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
API_PREFIX = "/api/"
# Only the v2 API negotiates: CompreFace's clients get application/json as CompreFace sends.
NEGOTIATED_PREFIX = "/api/v2"


def asks_for_json(accept: str | None) -> bool:
    """Whether an Accept header names JSON (application/json or a +json type) with q > 0.
    Wildcards (*/*, application/*) do not count: they are what a browser or jQuery sends."""
    for item in (accept or "").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        media = media.lower()
        if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            return True
    return False


def api_media_type(accept: str | None) -> str:
    """The Content-Type of an API answer for a request with this Accept header."""
    return JSON if asks_for_json(accept) else TEXT


class ApiContentType:
    """Rewrites the Content-Type of the v2 API's JSON answers (paths under /api/v2) to the
    negotiated type; other routes (the page, /docs, /openapi.json, /health) keep theirs.
    Pure ASGI: the body and the client's disconnect messages pass through untouched."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(NEGOTIATED_PREFIX):
            await self.app(scope, receive, send)
            return
        accept = None
        for name, value in scope["headers"]:
            if name == b"accept":
                accept = value.decode("latin-1")
                break
        media_type = api_media_type(accept).encode("latin-1")

        async def send_negotiated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = []
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type" and value.startswith(JSON.encode()):
                        value = media_type
                    headers.append((name, value))
                # Never sniffed into HTML or script, whatever the body holds.
                if not any(name.lower() == b"x-content-type-options" for name, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"vary", b"Accept"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_negotiated)
