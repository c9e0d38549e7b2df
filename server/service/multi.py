"""Several analyses of one image for one quota unit, and batches of such images (what the
Google Cloud Vision dialect's `images:annotate` asks: several features of each image).

One image: /api/v2/'s checks in their order after the key (402 → 413/415/412 → 503), one
unit reserved, the image decoded once and each type's model called once
(AnalysisPipeline.run_types), each type's result stored as /api/v2/ stores it.

A batch: its images side by side, one unit each. An image's own fault (not an image, too
large, a bad parameter) is its answer alone and costs nothing; an error of the call (no quota
left, the server overloaded, the client gone) fails the whole batch and gives back every unit
of it, since none of its images is answered. So the units are kept only once the whole batch
is done."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from models.images import ImageError, ImageInfo
from server.errors import ApiError, ErrorKind, ModelUnavailableError, api_error
from server.pipeline.analysis import PipelineResult
from server.pipeline.batching import Batcher
from server.service.quota import QuotaCharge
from server.store.keys import KeyRecord, Reservation
from server.store.results import lookup_hash

if TYPE_CHECKING:
    from server.service.application import ApplicationService

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
    """Whether an error is one image's own (else it fails the whole call)."""
    if isinstance(exc, ImageError):
        return True
    error = api_error(exc) if isinstance(exc, Exception) else None
    return error is not None and error.kind in IMAGE_FAULTS


def _check_image(
    service: ApplicationService, job: ImageJob, batchers: dict[str, Batcher]
) -> ImageInfo:
    """413, 415, 412 from the header, then 503 for a type no model serves. Blocking: in the
    same trip off the event loop as the quota."""
    info = service.pipeline.inspect(job.data)
    missing = sorted(set(job.types) - set(batchers))
    if missing:
        service.pipeline.check_decodable(job.data, info)  # undecodable is 412 before 503
        raise ModelUnavailableError(f"type {missing[0]} is unavailable")
    return info


def _refuse_overloaded(
    service: ApplicationService, key: KeyRecord, data: bytes, batcher: Batcher
) -> None:
    """As /api/v2/: refused before decoding and without taking quota; 402 and the image's
    own checks still answer first. Blocking."""
    if service.keys.remaining(key) == 0:
        raise ApiError(ErrorKind.QUOTA_REACHED)
    service.pipeline.inspect(data)
    raise batcher.overloaded()


def _store(
    service: ApplicationService,
    key: KeyRecord,
    job: ImageJob,
    results: dict[str, PipelineResult],
) -> dict[str, str | None]:
    """Each type's result stored (type=cache lists them); an id None: storing is off."""
    ids = {}
    for type_, result in results.items():
        params = job.types[type_]
        lookup = lookup_hash(
            key.id, result.info.sha256, type_, {**params, "_state": ""}, result.model
        )
        ids[type_] = service.results.save(
            key.id, type_, result.info, params, result.model, result.analysis, lookup
        )
    return ids


async def analyze_image(
    service: ApplicationService, key: KeyRecord, job: ImageJob
) -> tuple[Reservation, dict[str, dict[str, Any]]]:
    """One image's analyses: each type's /api/v2/ ``data``. Its unit is reserved and left
    pending (neither kept nor given back) for the batch to decide; given back if it fails."""
    started = time.perf_counter()
    batchers: dict[str, Batcher] = {}
    for type_ in job.types:
        batcher, _ = await service.pipeline.batcher_or_error(type_)
        if batcher is not None:
            batchers[type_] = batcher
    for batcher in batchers.values():
        if not batcher.has_room():
            await run_in_threadpool(_refuse_overloaded, service, key, job.data, batcher)
    checks = functools.partial(_check_image, service, job, batchers)
    async with QuotaCharge(service.keys, key, lambda _reservation: checks()) as charge:
        info = charge.value
        assert info is not None
        results = await service.pipeline.run_types(batchers, job.data, info, job.types)
        ids = await run_in_threadpool(_store, service, key, job, results)
        charge.stored()  # pending: analyze_batch keeps or gives back the unit
    elapsed_ms = round((time.perf_counter() - started) * 1000.0, 1)
    return charge.reservation, {
        type_: {
            **result.data(),
            "quota": charge.remaining,
            "id": ids[type_],
            "cached": False,
            "elapsed_ms": elapsed_ms,
        }
        for type_, result in results.items()
    }


def _settle_all(service: ApplicationService, reservations: list[Reservation]) -> None:
    for reservation in reservations:
        service.keys.settle(reservation)


def _refund_all(service: ApplicationService, reservations: list[Reservation]) -> None:
    for reservation in reservations:
        service.keys.refund(reservation)


async def analyze_batch(
    service: ApplicationService, key: KeyRecord, jobs: list[ImageJob]
) -> list[dict[str, dict[str, Any]] | Exception]:
    """Each image's analyses, or its own fault, in order; one unit per image answered. An
    error of the call is raised, every unit of the batch given back."""
    tasks = [asyncio.ensure_future(analyze_image(service, key, job)) for job in jobs]
    try:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    except asyncio.CancelledError:  # the client left: what was analysed is given back
        done = [
            task.result()[0]
            for task in tasks
            if task.done() and not task.cancelled() and task.exception() is None
        ]
        await asyncio.shield(run_in_threadpool(_refund_all, service, done))
        raise
    reservations = [outcome[0] for outcome in outcomes if isinstance(outcome, tuple)]
    call_error = next(
        (o for o in outcomes if isinstance(o, BaseException) and not is_image_fault(o)), None
    )
    if call_error is not None:
        await asyncio.shield(run_in_threadpool(_refund_all, service, reservations))
        raise call_error
    await run_in_threadpool(_settle_all, service, reservations)
    return [o[1] if isinstance(o, tuple) else o for o in outcomes]  # type: ignore[misc]
