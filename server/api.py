"""The /api/v2/ endpoint: the order of the checks, and every answer in the API's envelope."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from server.checks import CACHE_TYPE, CheckedRequest, check_parameters, check_type, require_apikey
from server.errors import ApiError, ErrorKind
from server.keys import KeyRecord
from server.service import AnalysisService
from server.upload import Upload, UploadTooLargeError, read_upload

log = logging.getLogger(__name__)

router = APIRouter()

T = TypeVar("T")
NO_SNIFF_NO_STORE = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def envelope(status: int, message: str, data: Any = None, headers: dict[str, str] | None = None):
    """The API's body, with the HTTP status equal to ``status``. Answers may carry results
    and keys' data: never sniffed as another type, never kept by a cache."""
    return JSONResponse(
        {"status": status, "status_message": message, "data": data},
        status_code=status,
        headers={**NO_SNIFF_NO_STORE, **(headers or {})},
    )


def error_response(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return envelope(error.status, error.status_message, None, headers)


def internal_error(request_id: str) -> JSONResponse:
    # The body never carries exception text; the log has it under the request id.
    return envelope(
        ErrorKind.INTERNAL.status, ErrorKind.INTERNAL.message, None, {"X-Request-Id": request_id}
    )


async def _authenticate(service: AnalysisService, apikey: str) -> KeyRecord:
    key = await run_in_threadpool(service.keys.authenticate, apikey)
    if key is None:
        raise ApiError(ErrorKind.APIKEY_INVALID)
    return key


async def _checked(service: AnalysisService, upload: Upload, is_get: bool):
    apikey = require_apikey(upload)
    key = await _authenticate(service, apikey)
    type_ = check_type(upload, is_get)
    assert type_ is not None
    params = check_parameters(type_, upload)
    return key, CheckedRequest(apikey=apikey, type=type_, params=params, file=upload.file)


async def _too_large(service: AnalysisService, upload: Upload, is_get: bool) -> ApiError:
    """The answer to a body cut short at the size limit: a field already seen that fails an
    earlier check answers with that check's code; otherwise 402 or 413."""
    apikey = upload.fields.get("apikey", "").strip()
    if apikey:
        key = await _authenticate(service, apikey)
        type_ = check_type(upload, is_get, partial=True)
        if type_ is not None:
            check_parameters(type_, upload, partial=True)
            if type_ != CACHE_TYPE and await run_in_threadpool(service.keys.remaining, key) == 0:
                return ApiError(ErrorKind.QUOTA_REACHED)
    return ApiError(ErrorKind.IMAGE_TOO_LARGE)


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


async def handle(request: Request) -> JSONResponse:
    with request.app.state.trimmer.request():
        return await _handle(request)


async def _handle(request: Request) -> JSONResponse:
    service: AnalysisService = request.app.state.service
    request_id = uuid.uuid4().hex[:16]
    is_get = request.method == "GET"
    try:
        try:
            upload = await read_upload(request, service.settings.max_upload_bytes)
        except UploadTooLargeError as exc:
            raise await _too_large(service, exc.upload, is_get) from None
        key, checked = await _checked(service, upload, is_get)
        if checked.type == CACHE_TYPE:
            data = await service.cache(key, checked)
        else:
            data = await until_disconnected(request, service.analyze(key, checked))
        return envelope(200, "OK", data)
    except ApiError as error:
        if error.kind is ErrorKind.CLIENT_CLOSED:
            log.info("request %s: client left before its answer; dropped, refunded", request_id)
        return error_response(error)
    except ClientDisconnect:
        log.info("request %s: client left during its upload", request_id)
        return error_response(ApiError(ErrorKind.CLIENT_CLOSED))
    except Exception:
        log.exception("request %s failed", request_id)
        return internal_error(request_id)


@router.api_route("/api/v2/", methods=["GET", "POST"])
async def api_v2(request: Request) -> JSONResponse:
    return await handle(request)


@router.api_route("/api/v2", methods=["GET", "POST"])
async def api_v2_without_slash(request: Request) -> JSONResponse:
    # The original answers 300 here: "Note the slash at the end after version number".
    return error_response(ApiError(ErrorKind.NO_DATA))
