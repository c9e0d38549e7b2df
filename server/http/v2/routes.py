"""The /api/v2/ endpoint: read the upload, admit (server/service/admission.py), answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from server.catalog import CACHE_TYPE
from server.errors import ApiError, ErrorKind
from server.http.disconnect import until_disconnected
from server.http.respond import error_response, respond
from server.http.state import State
from server.http.upload import UploadTooLargeError, read_upload
from server.service.admission import admit
from server.telemetry.requests import note_type

router = APIRouter()


@router.api_route("/api/v2/", methods=["GET", "POST"])
async def api_v2(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        try:
            upload, cut_off = await read_upload(request, state.settings.max_upload_bytes), False
        except UploadTooLargeError as exc:
            upload, cut_off = exc.upload, True
        note_type(upload.fields.get("type"))
        admitted = await admit(
            state.keys,
            state.results,
            state.pipeline,
            upload,
            request.method == "GET",
            cut_off=cut_off,
        )
        if admitted.type == CACHE_TYPE:
            return await state.service.cache(admitted)
        return await until_disconnected(request, state.service.analyze(admitted))

    return await respond(request, work)


@router.api_route("/api/v2", methods=["GET", "POST"])
async def api_v2_without_slash(request: Request) -> JSONResponse:
    # The original answers 300 here: "Note the slash at the end after version number".
    return error_response(ApiError(ErrorKind.NO_DATA))
