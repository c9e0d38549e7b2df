"""/api/v2/gallery/: the operator's gallery of known people, for admin keys only.

POST   /api/v2/gallery/                       apikey, name, file (one or more): enrol
GET    /api/v2/gallery/?apikey=…              list people and their faces
DELETE /api/v2/gallery/{name}?apikey=…        remove a person and their descriptors
DELETE /api/v2/gallery/{name}/faces/{id}?apikey=…   remove one face
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from server.api import envelope, error_response, internal_error
from server.errors import ApiError, ErrorKind
from server.gallery import GalleryError, enrolment_faces
from server.service import AnalysisService
from server.upload import Upload, UploadTooLargeError, read_upload

log = logging.getLogger(__name__)

router = APIRouter()
TYPE = "celebrities"


async def _guarded(
    request: Request, work: Callable[[AnalysisService, Upload], Awaitable[Any]]
) -> JSONResponse:
    service: AnalysisService = request.app.state.service
    try:
        try:
            upload = await read_upload(request, service.settings.max_upload_bytes)
        except UploadTooLargeError:
            raise ApiError(ErrorKind.IMAGE_TOO_LARGE) from None
        apikey = upload.fields.get("apikey", "").strip()
        if not apikey:
            raise ApiError(ErrorKind.APIKEY_MISSING)
        key = await run_in_threadpool(service.keys.authenticate, apikey)
        if key is None:
            raise ApiError(ErrorKind.APIKEY_INVALID)
        if not key.is_admin:
            raise ApiError(ErrorKind.APIKEY_NOT_ADMIN)
        data = await work(service, upload)
        return envelope(200, "OK", data)
    except GalleryError as exc:
        return error_response(ApiError(ErrorKind.INVALID_PARAMETER, str(exc)))
    except ApiError as error:
        return error_response(error)
    except Exception:
        request_id = uuid.uuid4().hex[:16]
        log.exception("gallery request %s failed", request_id)
        return internal_error(request_id)


@router.post("/api/v2/gallery/")
@router.post("/api/v2/gallery", include_in_schema=False)
async def enrol(request: Request) -> JSONResponse:
    async def work(service: AnalysisService, upload: Upload) -> Any:
        name = upload.fields.get("name", "").strip()
        if not name:
            raise ApiError(ErrorKind.INVALID_PARAMETER, "name (missing)")
        photos = upload.files
        if not photos:
            raise ApiError(ErrorKind.INVALID_PARAMETER, "file (missing)")
        batcher = await service.models.batcher(TYPE)
        model = batcher.model
        faces = await batcher.run_exclusive(
            enrolment_faces, model, photos, service.settings.max_image_pixels
        )
        return await run_in_threadpool(
            service.models.gallery.enrol, name, faces, model.descriptor_name
        )

    return await _guarded(request, work)


@router.get("/api/v2/gallery/")
@router.get("/api/v2/gallery", include_in_schema=False)
async def people(request: Request) -> JSONResponse:
    async def work(service: AnalysisService, upload: Upload) -> Any:
        cls = service.models.model_class(TYPE)
        return {
            "people": await run_in_threadpool(service.models.gallery.people, cls.descriptor_name)
        }

    return await _guarded(request, work)


@router.delete("/api/v2/gallery/{name}")
async def remove_person(request: Request, name: str) -> JSONResponse:
    async def work(service: AnalysisService, upload: Upload) -> Any:
        await run_in_threadpool(service.models.gallery.remove_person, name)
        return {"removed": name}

    return await _guarded(request, work)


@router.delete("/api/v2/gallery/{name}/faces/{face_id}")
async def remove_face(request: Request, name: str, face_id: int) -> JSONResponse:
    async def work(service: AnalysisService, upload: Upload) -> Any:
        await run_in_threadpool(service.models.gallery.remove_face, name, face_id)
        return {"removed": {"name": name, "face": face_id}}

    return await _guarded(request, work)
