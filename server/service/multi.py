"""Several analyses of one image for one quota unit, and batches of such images (the Google
Cloud Vision dialect's `images:annotate`: one image, several features).

One image: the checks of /api/v2/ in their order after the key (402 → 413/415/412 → 503),
one unit reserved, the image decoded once and each type's model called once
(AnalysisPipeline.run_types), each type's result stored as /api/v2/ stores it, the unit kept.

A batch: its images side by side, one unit each. An image's own fault (not an image, too
large, a bad parameter) is its answer alone; an error of the call (no quota left, the server
overloaded, the client gone) fails the whole batch and gives back every unit of it, since no
image of it is answered."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from models.images import ImageError, ImageInfo
from server.errors import ApiError, ErrorKind, ModelUnavailableError, api_error
from server.pipeline.analysis import AnalysisPipeline, PipelineResult
from server.pipeline.batching import Batcher
from server.service.analysis import analysis_data
from server.store.keys import KeyRecord, KeyStore, Reservation
from server.store.results import ResultStore, lookup_hash

# An image's own faults: answered for that image only.
IMAGE_FAULTS = frozenset(
    {
        ErrorKind.NO_DATA,
        ErrorKind.INVALID_FILE,
        ErrorKind.IMAGE_TOO_LARGE,
        ErrorKind.INVALID_FORMAT,
        ErrorKind.INVALID_TYPE,
        ErrorKind.INVALID_PARAMETER,
    }
)


@dataclass(frozen=True)
class ImageJob:
    """One image and the analyses asked of it: type → its checked parameters."""

    data: bytes
    types: dict[str, dict[str, Any]]


def is_image_fault(exc: BaseException) -> bool:
    if isinstance(exc, ImageError):
        return True
    error = api_error(exc) if isinstance(exc, Exception) else None
    return error is not None and error.kind in IMAGE_FAULTS


class MultiAnalysis:
    """Runs ImageJobs for the ApplicationService."""

    def __init__(self, keys: KeyStore, results: ResultStore, pipeline: AnalysisPipeline):
        self.keys = keys
        self.results = results
        self.pipeline = pipeline

    async def _admit(
        self, key: KeyRecord, job: ImageJob, batchers: dict[str, Batcher]
    ) -> tuple[Reservation, ImageInfo]:
        """402 → 413/415/412 → 503 in one trip off the event loop; the unit taken is given
        back if a later check fails."""

        def checks() -> tuple[Reservation, ImageInfo]:
            full = [b for b in batchers.values() if not b.has_room()]
            if full:  # refused before decoding and without taking quota, as /api/v2/
                if self.keys.remaining(key) == 0:
                    raise ApiError(ErrorKind.QUOTA_REACHED)
                self.pipeline.inspect(job.data)
                raise full[0].overloaded()
            reservation = self.keys.reserve(key)
            try:
                info = self.pipeline.inspect(job.data)
                missing = set(job.types) - set(batchers)
                if missing:
                    self.pipeline.check_decodable(job.data, info)
                    raise ModelUnavailableError(f"type {sorted(missing)[0]} is unavailable")
            except BaseException:
                self.keys.refund(reservation)
                raise
            return reservation, info

        return await run_in_threadpool(checks)

    async def _batchers(self, types: dict[str, dict[str, Any]]) -> dict[str, Batcher]:
        batchers = {}
        for type_ in types:
            batcher, _ = await self.pipeline.batcher_or_error(type_)
            if batcher is not None:
                batchers[type_] = batcher
        return batchers

    def _store(
        self, key: KeyRecord, job: ImageJob, info: ImageInfo, results: dict[str, PipelineResult]
    ) -> dict[str, str | None]:
        """Each type's result stored (type=cache lists them); None: storing is off."""
        ids = {}
        for type_, result in results.items():
            identity = {**job.types[type_], "_state": ""}
            lookup = lookup_hash(key.id, info.sha256, type_, identity, result.model)
            ids[type_] = self.results.save(
                key.id, type_, info, job.types[type_], result.model, result.analysis, lookup
            )
        return ids

    async def analyze(
        self, key: KeyRecord, job: ImageJob
    ) -> tuple[Reservation, dict[str, dict[str, Any]]]:
        """One image's analyses (the /api/v2/ ``data`` of each type), its unit reserved and
        not yet kept: the caller settles or refunds it."""
        started = time.perf_counter()
        batchers = await self._batchers(job.types)
        reservation, info = await self._admit(key, job, batchers)
        try:
            results = await self.pipeline.run_types(batchers, job.data, info, job.types)
            ids = await run_in_threadpool(self._store, key, job, info, results)
        except BaseException:
            await asyncio.shield(run_in_threadpool(self.keys.refund, reservation))
            raise
        return reservation, {
            type_: analysis_data(
                result,
                quota=reservation.remaining,
                result_id=ids[type_],
                cached=False,
                started=started,
            )
            for type_, result in results.items()
        }

    async def analyze_batch(
        self, key: KeyRecord, jobs: list[ImageJob]
    ) -> list[dict[str, dict[str, Any]] | Exception]:
        """Each image's analyses, or its own fault, in order; one unit per image answered.
        An error of the call is raised, every unit of the batch given back."""
        tasks = [asyncio.ensure_future(self.analyze(key, job)) for job in jobs]
        try:
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:  # the client left: what was analysed is given back
            done = [
                t.result()[0]
                for t in tasks
                if t.done() and not t.cancelled() and t.exception() is None
            ]
            await asyncio.shield(run_in_threadpool(lambda: [self.keys.refund(r) for r in done]))
            raise
        reservations = [o[0] for o in outcomes if isinstance(o, tuple)]
        call_error = next(
            (o for o in outcomes if isinstance(o, BaseException) and not is_image_fault(o)),
            None,
        )
        if call_error is not None:
            await asyncio.shield(
                run_in_threadpool(lambda: [self.keys.refund(r) for r in reservations])
            )
            raise call_error
        await run_in_threadpool(lambda: [self.keys.settle(r) for r in reservations])
        return [o[1] if isinstance(o, tuple) else o for o in outcomes]
