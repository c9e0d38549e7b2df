"""One quota unit per operation, as one context manager: reserved on entry, refunded if the
operation fails or its client leaves, kept when it succeeds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

from server.errors import ApiError, ErrorKind
from server.store.keys import KeyRecord, KeyStore, Reservation

T = TypeVar("T")


class QuotaCharge(Generic[T]):
    """``async with QuotaCharge(keys, key, then) as charge``: takes one unit of ``key``'s quota
    (402 when none is left), then runs ``then(reservation)`` in the same trip off the event
    loop (the checks that follow the quota; their result is ``charge.value``).

    On leaving: an exception (or a cancellation) gives the unit back, at most once; success
    keeps it charged, unless the body already did so in its own transaction (``stored()``: a
    stored result settles its unit with it)."""

    def __init__(
        self,
        keys: KeyStore,
        key: KeyRecord,
        then: Callable[[Reservation], T] | None = None,
    ):
        self.keys = keys
        self.key = key
        self.then = then
        self.value: T | None = None
        self._reservation: Reservation | None = None
        self._settled = False

    @property
    def reservation(self) -> Reservation:
        assert self._reservation is not None, "used outside its async with"
        return self._reservation

    @property
    def remaining(self) -> int | None:
        """What is left of the quota after this unit (None: unlimited)."""
        return self.reservation.remaining

    def stored(self) -> None:
        """The body kept the unit charged itself (with a stored result)."""
        self._settled = True

    def _reserve_then_check(
        self, handover: threading.Lock, given_up: threading.Event
    ) -> tuple[Reservation, T | None]:
        reservation = self.keys.reserve(self.key)  # 402
        with handover:
            if given_up.is_set():  # the coroutine was cancelled meanwhile
                self.keys.refund(reservation)
                raise ApiError(ErrorKind.CLIENT_CLOSED)
            self._reservation = reservation
        try:
            return reservation, (self.then(reservation) if self.then is not None else None)
        except BaseException:
            self.keys.refund(reservation)  # at most once, also if __aexit__ tries again
            raise

    async def __aenter__(self) -> QuotaCharge[T]:
        # Between this coroutine, cancelled when its client leaves, and the thread that
        # reserves: a unit the thread takes after the cancellation is given back, never kept
        # by a request that is gone.
        handover, given_up = threading.Lock(), threading.Event()
        try:
            _, self.value = await run_in_threadpool(self._reserve_then_check, handover, given_up)
        except asyncio.CancelledError:
            with handover:
                given_up.set()
                taken = self._reservation
            if taken is not None:
                asyncio.get_running_loop().run_in_executor(None, self.keys.refund, taken)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        reservation = self.reservation
        if exc_type is not None:
            # Given back unless its result was stored (then the unit stays charged).
            await asyncio.shield(run_in_threadpool(self.keys.refund, reservation))
        elif not self._settled:
            await run_in_threadpool(self.keys.settle, reservation)
