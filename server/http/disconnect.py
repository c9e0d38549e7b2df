"""Dropping the work of a request whose client has gone: shared by every API dialect."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import Request

from server.errors import ApiError, ErrorKind

T = TypeVar("T")


async def until_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Runs ``work`` (after the body has been read) and cancels it if the client goes away
    first: a request still waiting for its model is dropped before the model call, and
    quota reserved for it is refunded. uvicorn itself lets such a handler run to the end."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if not watcher.done() or watcher.cancelled():
            raise  # cancelled from outside, not by the client leaving
        raise ApiError(ErrorKind.CLIENT_CLOSED) from None
    finally:
        watcher.cancel()
