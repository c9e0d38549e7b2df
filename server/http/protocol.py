"""uvicorn's HTTP/1.1 protocol (httptools) with what it lacks for a server on an open port:
a bound on the size of a request's headers and on the time to receive them, a bound on each
pause of a request's body (``IMAGERECOGNIZE_BODY_TIMEOUT_S``), and an answer for a client that
half-closes its socket after sending its whole request.

`imagerecognize serve` runs uvicorn with ``http=`` this class.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from server.http.envelope import envelope_bytes
from server.settings import get_settings

REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


class _HalfClosableCycle(RequestResponseCycle):
    """A request whose client may have closed its sending side (``peer_closed``): the answer
    is still written, while the app hears ``http.disconnect`` once the body is read, as from
    a client that left (an analysis still waiting for its model is dropped and refunded)."""

    peer_closed = False

    async def receive(self) -> Any:
        if self.peer_closed and not self.more_body and not self.body:
            return {"type": "http.disconnect"}
        return await super().receive()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.max_header_bytes = settings.max_header_bytes
        self.header_timeout_s = settings.header_timeout_s
        self.body_timeout_s = settings.body_timeout_s
        self._body_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()  # a connection that sends nothing is not kept either

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        self._stop_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._body_timer is not None:
            self._start_body_timer()  # the body moves: a new pause begins
        if self._awaiting_headers:
            self._header_bytes += len(data)
            if self._header_timer is None:
                self._start_header_timer()
        super().data_received(data)
        if (
            self._awaiting_headers
            and self._header_bytes > self.max_header_bytes
            and not self.transport.is_closing()
        ):
            self._refuse(431)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._stop_header_timer()
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = _HalfClosableCycle
        self._start_body_timer()  # until the body is complete (at once for a GET)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._stop_body_timer()
        self._awaiting_headers = True  # what follows is the next request's headers

    def eof_received(self) -> bool | None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            # The whole request arrived and the client shut its sending side (HTTP/1.1
            # allows it): keep the socket open to write the answer, then close it.
            cycle.keep_alive = False
            if isinstance(cycle, _HalfClosableCycle):
                cycle.peer_closed = True
            cycle.message_event.set()
            return True
        return None  # the transport closes, as before

    def _start_header_timer(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        in_flight = self.cycle is not None and not self.cycle.response_complete
        if self._awaiting_headers and not in_flight and not self.transport.is_closing():
            self._refuse(408)

    def _start_body_timer(self) -> None:
        self._stop_body_timer()
        self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_timeout)

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timeout(self) -> None:
        """A body that stopped arriving: the request cannot be answered, and its connection
        is not kept for as long as the client likes. The app sees its client leave."""
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            return
        if self.flow.read_paused:  # the app is behind, not the client: wait for it
            self._start_body_timer()
            return
        if cycle.response_started:
            self.transport.close()
        else:
            self._refuse(408)

    def _refuse(self, status: int) -> None:
        """Answers in the API's envelope and closes the connection."""
        reason = REASONS[status]
        body = envelope_bytes(status, reason)
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()
        self._stop_header_timer()
        self._stop_body_timer()
        self.logger.info("%s: %d %s", self.client, status, reason)
