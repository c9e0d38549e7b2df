"""The idle trimmer gives memory back only after requests came and none is in flight."""

from __future__ import annotations

import asyncio

from server.ops.memory import IdleTrimmer


def test_trims_once_after_a_burst_and_never_mid_request() -> None:
    trimmer = IdleTrimmer()
    calls: list[int] = []
    trimmer._trim = calls.append  # the real one is glibc's malloc_trim

    async def scenario() -> None:
        task = asyncio.create_task(trimmer.run(interval_s=0.01))
        await asyncio.sleep(0.05)
        assert calls == []  # no request yet: nothing to give back
        with trimmer.request():
            await asyncio.sleep(0.05)
            assert calls == []  # a request in flight: never
        await asyncio.sleep(0.05)
        assert calls == [0]  # once after the burst, not again while idle
        task.cancel()

    asyncio.run(scenario())
