"""Gives the heap that a burst of requests used back to the operating system once it is over.

glibc keeps freed memory in its arenas (one per thread that allocated), so after a burst a
server's resident memory stays at the burst's peak. Measured with 2,000 nsfw requests at
concurrency 64: +510 MB over the warm server, of which ``malloc_trim`` gave back 300 MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

# How often an idle server checks whether requests came since its last trim.
TRIM_INTERVAL_S = 5.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on other C libraries (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


class IdleTrimmer:
    """Counts requests in flight; when none are, and some came since the last trim, trims."""

    def __init__(self) -> None:
        self._trim = _malloc_trim()
        self.in_flight = 0
        self._used_since_trim = False

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        self.in_flight += 1
        self._used_since_trim = True
        try:
            yield
        finally:
            self.in_flight -= 1

    async def run(self, interval_s: float = TRIM_INTERVAL_S) -> None:
        if self._trim is None:
            return
        while True:
            await asyncio.sleep(interval_s)
            if self._used_since_trim and self.in_flight == 0:
                self._used_since_trim = False
                try:
                    await asyncio.to_thread(self._trim, 0)
                except Exception:
                    log.exception("malloc_trim failed")
