"""`BatchAnnotateImages`, for REST and gRPC alike: Google's request in (as proto JSON), each
image's bytes (its content, or its imageUri fetched by the operator's rules), one service call
for the batch, Google's response out. Errors of the call are raised (GoogleError, or what the
service raises); one image's fault is its ``responses[i].error``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool

from server.http.google import annotations, wire
from server.http.google.errors import GoogleError, google_error
from server.http.google.image_uri import ImageFetcher, ImageUriError
from server.service.application import ApplicationService, KeyRecord
from server.service.multi import ImageJob
from server.settings import Settings
from server.telemetry.requests import note_type

log = logging.getLogger(__name__)

GCS_REFUSED = (
    "gcsImageUri is not read by this server (it has no access to Google Cloud Storage); "
    "send the image's content"
)


def image_fault(exc: Exception, request_id: str) -> dict[str, Any]:
    """One image's answer when it failed: its ``error`` (google.rpc.Status)."""
    error = google_error(exc)
    if error is None:
        log.error("request %s: one image failed", request_id, exc_info=exc)
        error = GoogleError("INTERNAL", "Internal error.")
    return error.image_error()


async def _image_bytes(request: wire.ImageRequest, fetcher: ImageFetcher) -> bytes | GoogleError:
    """The image's bytes, or why there are none (that image's answer)."""
    source = request.image
    if source.content is not None:
        return source.content
    if source.image_uri is not None and source.image_uri.strip().lower().startswith("gs://"):
        return GoogleError("INVALID_ARGUMENT", GCS_REFUSED)  # Google reads gs:// here too
    if source.image_uri is not None:
        try:
            return await fetcher.fetch(source.image_uri)
        except ImageUriError as exc:
            status = "PERMISSION_DENIED" if exc.refused else "INVALID_ARGUMENT"
            return GoogleError(status, str(exc))
    if source.gcs_image_uri is not None:
        return GoogleError("INVALID_ARGUMENT", GCS_REFUSED)
    return GoogleError("INVALID_ARGUMENT", "No image content or source given.")


async def batch_annotate(
    service: ApplicationService, key: KeyRecord, body: Any, settings: Settings, request_id: str
) -> dict[str, Any]:
    """``{"responses": [...]}``, one per image, in order: one service call for the batch."""
    try:
        # Off the event loop: up to 16 images of base64 to decode.
        requests = await run_in_threadpool(wire.batch_request, body)
    except wire.RequestError as exc:
        raise GoogleError("INVALID_ARGUMENT", str(exc)) from None
    asked = [(index, r) for index, r in enumerate(requests) if r.features]
    fetcher = ImageFetcher(
        settings.google_image_uri_allow,
        settings.max_upload_bytes,
        settings.google_image_uri_timeout_s,
    )
    # URLs fetched side by side.
    sources = await asyncio.gather(*(_image_bytes(r, fetcher) for _, r in asked))
    # Nothing we serve asked of an image: nothing to answer for it.
    responses: list[dict[str, Any]] = [{} for _ in requests]
    jobs: list[tuple[int, ImageJob]] = []
    for (index, request), data in zip(asked, sources, strict=True):
        if isinstance(data, GoogleError):
            responses[index] = data.image_error()
        else:
            jobs.append((index, ImageJob(data, request.types)))
    kinds = {type_ for _, job in jobs for type_ in job.types}
    note_type(next(iter(kinds)) if len(kinds) == 1 else None)
    outcomes = await service.analyze_batch(key, [job for _, job in jobs]) if jobs else []
    for (index, _), outcome in zip(jobs, outcomes, strict=True):
        if isinstance(outcome, Exception):
            responses[index] = image_fault(outcome, request_id)
        else:
            responses[index] = annotations.annotate(requests[index], outcome)
    return {"responses": responses}
