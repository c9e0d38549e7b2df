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
from starlette.requests import ClientDisconnect

from server.api import envelope, error_response, internal_error
from server.errors import ApiError, ErrorKind
from server.gallery import GalleryError, check_name, check_source, enrolment_faces
from server.service import AnalysisService
from server.upload import Upload, UploadTooLargeError, read_upload

log = logging.getLogger(__name__)

router = APIRouter()
TYPE = "celebrities"
MAX_FACE_ID = 2**63 - 1  # face ids are 64-bit database keys


def _face_id(text: str) -> int:
    """The face id of a route, or 421 (a larger int overflows the database driver: 500)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_FACE_ID:
        raise ApiError(ErrorKind.INVALID_PARAMETER, f"face id (an integer up to {MAX_FACE_ID})")
    return int(text)


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
        if key is None or not key.is_admin:
            raise ApiError(ErrorKind.APIKEY_INVALID)
        data = await work(service, upload)
        return envelope(200, "OK", data)
    except GalleryError as exc:
        return error_response(ApiError(ErrorKind.INVALID_PARAMETER, str(exc)))
    except ApiError as error:
        return error_response(error)
    except ClientDisconnect:
        log.info("gallery request: client left during its upload")
        return error_response(ApiError(ErrorKind.CLIENT_CLOSED))
    except Exception:
        request_id = uuid.uuid4().hex[:16]
        log.exception("gallery request %s failed", request_id)
        return internal_error(request_id)


@router.post("/api/v2/gallery/")
async def enrol(request: Request) -> JSONResponse:
    async def work(service: AnalysisService, upload: Upload) -> Any:
        name = upload.fields.get("name", "").strip()
        if not name:
            raise ApiError(ErrorKind.INVALID_PARAMETER, "name (missing)")
        photos = upload.files
        if not photos:
            raise ApiError(ErrorKind.INVALID_PARAMETER, "file (missing)")
        # What the database cannot hold is refused before the model runs.
        check_name(name)
        for source, _ in photos:
            check_source(source)
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
async def people(request: Request) -> JSONResponse:
    async def work(service: AnalysisService, upload: Upload) -> Any:
        cls = service.models.model_class(TYPE)
        return {
            "people": await run_in_threadpool(service.models.gallery.people, cls.descriptor_name)
        }

    return await _guarded(request, work)


# Names may hold "/" (path converters); this route comes first, as the person's would
# also match ".../faces/ID".
@router.delete("/api/v2/gallery/{name:path}/faces/{face_id}")
async def remove_face(request: Request, name: str, face_id: str) -> JSONResponse:
    async def work(service: AnalysisService, upload: Upload) -> Any:
        number = _face_id(face_id)
        await run_in_threadpool(service.models.gallery.remove_face, name, number)
        return {"removed": {"name": name, "face": number}}

    return await _guarded(request, work)


@router.delete("/api/v2/gallery/{name:path}")
async def remove_person(request: Request, name: str) -> JSONResponse:
    async def work(service: AnalysisService, upload: Upload) -> Any:
        await run_in_threadpool(service.models.gallery.remove_person, name)
        return {"removed": name}

    return await _guarded(request, work)
