"""The key of a v2 request that names it in its form (``apikey``): read once here for the
routes that authenticate before anything else (the gallery, deleting a result)."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from server.errors import ApiError, ErrorKind
from server.http.state import AppState
from server.http.upload import Upload, UploadTooLargeError, read_upload
from server.store.keys import KeyRecord


async def keyed_upload(request: Request, state: AppState) -> tuple[Upload, KeyRecord]:
    """The request's fields and files, and the key they name: else 413, 400 or 401."""
    try:
        upload = await read_upload(request, state.settings.max_upload_bytes)
    except UploadTooLargeError:
        raise ApiError(ErrorKind.IMAGE_TOO_LARGE) from None
    apikey = upload.fields.get("apikey", "").strip()
    if not apikey:
        raise ApiError(ErrorKind.APIKEY_MISSING)
    key = await run_in_threadpool(state.keys.authenticate, apikey)
    if key is None:
        raise ApiError(ErrorKind.APIKEY_INVALID)
    return upload, key
