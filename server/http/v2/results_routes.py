"""/api/v2/results/: a key's owner deletes one of its stored results.

DELETE /api/v2/results/{id}?apikey=…    the key's own result only; audited
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from server.catalog import MAX_RESULT_ID_CHARS
from server.errors import ApiError, ErrorKind
from server.http.respond import respond
from server.http.state import State
from server.http.upload import UploadTooLargeError, read_upload
from server.service.checks import NO_SUCH_RESULT

router = APIRouter()


@router.delete("/api/v2/results/{result_id}")
async def delete_result(request: Request, state: State, result_id: str) -> JSONResponse:
    async def work() -> Any:
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
        # No stored id is longer or holds NUL, which PostgreSQL refuses outright (500).
        if len(result_id) > MAX_RESULT_ID_CHARS or "\x00" in result_id:
            raise ApiError(ErrorKind.INVALID_PARAMETER, NO_SUCH_RESULT)
        return await state.service.delete(key, result_id)

    return await respond(request, work)
