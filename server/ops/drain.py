"""Graceful drain on SIGTERM.

At the signal: readiness answers 503 at once, new requests are answered 503 (server shutting
down, Retry-After) while the socket stays open for probes, and requests already in flight get
up to ``IMAGERECOGNIZE_SHUTDOWN_GRACE_S`` to finish. Then the server's own SIGTERM handler
runs (uvicorn's: stop listening, close connections, lifespan shutdown) and the process exits.
A second SIGTERM skips what is left of the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

POLL_S = 0.05


class Drain:
    def __init__(self, grace_s: float):
        self.grace_s = max(0.0, grace_s)
        self.started_at: float | None = None
        self._in_flight = 0
        self._previous: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._passed_on = False

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    def begin(self) -> None:
        """Readiness turns 503 and new requests are refused, from now on."""
        if self.started_at is None:
            self.started_at = time.monotonic()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Takes SIGTERM over from the server (in the main thread only, where signals are
        delivered; an app run by a test client in another thread has no drain)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._loop = loop
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def uninstall(self) -> None:
        if self._loop is not None and signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous)
        self._loop = None

    def _on_sigterm(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: runs in the main thread between two bytecodes of the event loop.
        if self.draining or self._loop is None:
            self._pass_on(sig, frame)
            return
        self.begin()
        self._loop.call_soon_threadsafe(self._start, sig, frame)

    def _start(self, sig: int, frame: FrameType | None) -> None:
        self._task = asyncio.get_running_loop().create_task(self._wait_then_exit(sig, frame))

    async def _wait_then_exit(self, sig: int, frame: FrameType | None) -> None:
        log.info(
            "SIGTERM: draining, %d request(s) in flight, up to %.0f s",
            self._in_flight,
            self.grace_s,
        )
        deadline = time.monotonic() + self.grace_s
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        if self._in_flight:
            log.warning(
                "grace period over: %d request(s) still in flight are cut off", self._in_flight
            )
        else:
            log.info("drained in %.1f s", time.monotonic() - (self.started_at or 0.0))
        self._pass_on(sig, frame)

    def _pass_on(self, sig: int, frame: FrameType | None) -> None:
        if self._passed_on:
            return
        self._passed_on = True
        previous = self._previous
        if callable(previous):
            previous(sig, frame)
        else:
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            signal.raise_signal(sig)
