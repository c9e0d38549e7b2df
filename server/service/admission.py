"""Which requests to /api/v2/ are answered, checked in the order of docs/api.md's table:

    300 → 400 → 401 → 420 → 421 → 402 → 413 / 415 / 412 → 503

An upload cut off at the size limit runs the same checks on the fields already received and
then answers 413 (docs/api.md, "Oversized uploads").
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from models.base import ModelId
from models.images import ImageInfo
from server.catalog import CACHE_TYPE
from server.errors import ApiError, ErrorKind, ModelUnavailableError
from server.pipeline.analysis import AnalysisPipeline
from server.pipeline.batching import Batcher
from server.service.checks import check_parameters, check_type
from server.service.form import Upload
from server.store.db import StoredResult
from server.store.keys import KeyRecord, KeyStore, Reservation
from server.store.results import ResultStore, lookup_hash


@dataclass(frozen=True)
class AdmittedImage:
    """An analysis past every check, its quota taken."""

    data: bytes
    batcher: Batcher
    info: ImageInfo
    model_id: ModelId
    reservation: Reservation  # the quota unit taken; remaining: what is left after it
    lookup: str  # key of this analysis among stored results
    stored: StoredResult | None  # an identical analysis stored earlier
    started: float  # time.perf_counter() when the analysis began (for elapsed_ms)


@dataclass(frozen=True)
class Admitted:
    key: KeyRecord
    type: str
    params: dict[str, Any]
    image: AdmittedImage | None = None  # None for type=cache


async def admit(
    keys: KeyStore,
    results: ResultStore,
    pipeline: AnalysisPipeline,
    upload: Upload,
    is_get: bool,
    *,
    cut_off: bool = False,
    route_params: dict[str, Any] | None = None,
) -> Admitted:
    """Runs the checks top to bottom; raises the first that fails (ApiError, or the image
    module's ImageError for 413/415/412). With ``cut_off`` it always raises (413 at the
    latest). ``route_params`` are parameters the route itself sets for the model (another
    API dialect's), never read from the client's fields; like the others they are part of
    what makes a stored result identical."""
    too_large = ApiError(ErrorKind.IMAGE_TOO_LARGE)

    # 300: nothing received.
    if upload.empty and not cut_off:
        raise ApiError(ErrorKind.NO_DATA)

    # 400: no key.
    apikey = upload.fields.get("apikey", "").strip()
    if not apikey:
        raise too_large if cut_off else ApiError(ErrorKind.APIKEY_MISSING)

    # 401: unknown or revoked key.
    key = await run_in_threadpool(keys.authenticate, apikey)
    if key is None:
        raise ApiError(ErrorKind.APIKEY_INVALID)

    # 420: unknown type (a cut-off body may not have reached it).
    type_ = check_type(upload, is_get, partial=cut_off)
    if type_ is None:
        raise too_large

    # 421: the type's parameters, each missing or malformed one named.
    params = {**check_parameters(type_, upload, partial=cut_off), **(route_params or {})}

    if type_ == CACHE_TYPE:  # free, and needs no image
        if cut_off:
            raise too_large
        return Admitted(key, type_, params)

    if cut_off:  # 402, then the file itself is too large
        if await run_in_threadpool(keys.remaining, key) == 0:
            raise ApiError(ErrorKind.QUOTA_REACHED)
        raise too_large

    assert upload.file is not None  # 421 otherwise
    return await admit_image(keys, results, pipeline, key, type_, params, upload.file)


async def admit_image(
    keys: KeyStore,
    results: ResultStore,
    pipeline: AnalysisPipeline,
    key: KeyRecord,
    type_: str,
    params: dict[str, Any],
    data: bytes,
) -> Admitted:
    """The checks after the key and the parameters: 402 → 413/415/412 → 503, then an
    identical stored result. For ``admit`` and for the other APIs' routes (DeepStack's), which
    authenticate and read parameters their own way."""
    started = time.perf_counter()
    # 503 is known now (loading the model on first use) but answered after the image checks.
    batcher, unavailable = await pipeline.batcher_or_error(type_)

    # Between this coroutine, cancelled when its client leaves, and the thread that reserves.
    handover, given_up, reserved = threading.Lock(), threading.Event(), []

    def quota_image_model() -> AdmittedImage:
        """402 → 413/415/412 → 503, then an identical stored result: one trip off the event
        loop. The quota taken here is refunded when a later check fails."""
        if batcher is not None and not batcher.has_room():
            # Overloaded: refused before decoding and without taking quota, so that a flood
            # cannot keep the cores decoding images that will not be analysed. The checks
            # before 503 still answer first (the image ones from the header only).
            if keys.remaining(key) == 0:
                raise ApiError(ErrorKind.QUOTA_REACHED)
            pipeline.inspect(data)
            raise batcher.overloaded()
        reservation = keys.reserve(key)  # 402
        with handover:
            if given_up.is_set():  # cancelled meanwhile
                keys.refund(reservation)
                raise ApiError(ErrorKind.CLIENT_CLOSED)
            reserved.append(reservation)
        try:
            info = pipeline.inspect(data)  # 413, 415, 412 from the header
            if batcher is None:
                pipeline.check_decodable(data, info)  # an undecodable file is 412 before 503
                raise unavailable or ModelUnavailableError(f"type {type_} is unavailable")
            model = batcher.model
            # The model's state (the gallery, for celebrities) may be read from the database.
            identity = {**params, "_state": model.state_token()}
            lookup = lookup_hash(key.id, info.sha256, type_, identity, model.model_id)
            stored = results.find_identical(key.id, lookup)
        except BaseException:
            keys.refund(reservation)  # at most once, also if the coroutine gives it back too
            raise
        return AdmittedImage(
            data, batcher, info, model.model_id, reservation, lookup, stored, started
        )

    try:
        image = await run_in_threadpool(quota_image_model)
    except asyncio.CancelledError:
        # The request was cancelled (its client left) while the thread ran: a unit the thread
        # took is given back, never kept by a request that is gone.
        with handover:
            given_up.set()
            taken = reserved
        if taken:
            asyncio.get_running_loop().run_in_executor(None, keys.refund, taken[0])
        raise
    return Admitted(key, type_, params, image)
