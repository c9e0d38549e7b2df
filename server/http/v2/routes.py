"""The /api/v2/ endpoint: read the upload, check the form (server/service/admission.py),
answer from the service."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from server.catalog import CACHE_TYPE
from server.errors import ApiError, ErrorKind
from server.http.disconnect import until_disconnected
from server.http.respond import V2Route, error_response, ok
from server.http.state import Service
from server.http.upload import UploadTooLargeError, read_upload
from server.telemetry.requests import note_type

router = APIRouter(route_class=V2Route)


@router.api_route("/api/v2/", methods=["GET", "POST"])
async def api_v2(request: Request, service: Service) -> JSONResponse:
    try:
        upload, cut_off = await read_upload(request, service.settings.max_upload_bytes), False
    except UploadTooLargeError as exc:
        upload, cut_off = exc.upload, True
    note_type(upload.fields.get("type"))
    form = await service.check_form(upload, is_get=request.method == "GET", cut_off=cut_off)
    if form.type == CACHE_TYPE:
        return ok(await service.stored_results(form.key, form.params))
    assert form.file is not None
    return ok(
        await until_disconnected(
            request, service.analyze(form.key, form.type, form.params, form.file)
        )
    )


@router.api_route("/api/v2", methods=["GET", "POST"])
async def api_v2_without_slash() -> JSONResponse:
    # The original answers 300 here: "Note the slash at the end after version number".
    return error_response(ApiError(ErrorKind.NO_DATA))
