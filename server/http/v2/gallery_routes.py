"""/api/v2/gallery/: the operator's gallery of known people, for admin keys only.

POST   /api/v2/gallery/                       apikey, name, file (one or more): enrol
GET    /api/v2/gallery/?apikey=…              list people and their faces
DELETE /api/v2/gallery/{name}?apikey=…        remove a person and their descriptors
DELETE /api/v2/gallery/{name}/faces/{id}?apikey=…   remove one face
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from server.errors import ApiError, ErrorKind
from server.http.respond import respond
from server.http.state import AppState, State
from server.http.upload import Upload
from server.http.v2.keyed import keyed_upload
from server.service.gallery import FACES_TYPE, enrol_in_gallery
from server.store.audit import api_actor

router = APIRouter()
TYPE = FACES_TYPE  # the type whose model enrols and recognises
FACE_ID = re.compile(r"[0-9a-fA-F-]{1,36}")  # a UUID, or an older face's integer id


def _face_id(text: str) -> str:
    """The face id of a route, or 421."""
    if not FACE_ID.fullmatch(text):
        raise ApiError(ErrorKind.INVALID_PARAMETER, "face id (a UUID or an integer)")
    return text.lower()


async def admin_upload(request: Request, state: AppState) -> tuple[Upload, str]:
    """The request's fields and photos, from an admin key, and who that is for the audit
    log: else 413, 400 or 401."""
    upload, key = await keyed_upload(request, state)
    if not key.is_admin:
        raise ApiError(ErrorKind.APIKEY_NOT_ADMIN)
    return upload, api_actor(key.name)


@router.post("/api/v2/gallery/")
@router.post("/api/v2/gallery", include_in_schema=False)
async def enrol(request: Request, state: State) -> JSONResponse:
    async def work() -> Any:
        upload, actor = await admin_upload(request, state)
        name = upload.fields.get("name", "").strip()
        if not name:
            raise ApiError(ErrorKind.INVALID_PARAMETER, "name (missing)")
        photos = upload.files
        if not photos:
            raise ApiError(ErrorKind.INVALID_PARAMETER, "file (missing)")
        return await enrol_in_gallery(state.pipeline, state.gallery, name, photos, actor=actor)

    return await respond(request, work)


@router.get("/api/v2/gallery/")
@router.get("/api/v2/gallery", include_in_schema=False)
async def people(request: Request, state: State) -> JSONResponse:
    async def work() -> Any:
        await admin_upload(request, state)
        descriptor = state.pipeline.model_class(TYPE).descriptor_name
        return {"people": await run_in_threadpool(state.gallery.people, descriptor)}

    return await respond(request, work)


# Names may hold "/" (path converters); this route comes first, as the person's would
# also match ".../faces/ID".
@router.delete("/api/v2/gallery/{name:path}/faces/{face_id}")
async def remove_face(request: Request, state: State, name: str, face_id: str) -> JSONResponse:
    async def work() -> Any:
        _, actor = await admin_upload(request, state)
        number = _face_id(face_id)
        await run_in_threadpool(state.gallery.remove_face, name, number, actor=actor)
        return {"removed": {"name": name, "face": number}}

    return await respond(request, work)


@router.delete("/api/v2/gallery/{name:path}")
async def remove_person(request: Request, state: State, name: str) -> JSONResponse:
    async def work() -> Any:
        _, actor = await admin_upload(request, state)
        await run_in_threadpool(state.gallery.remove_person, name, actor=actor)
        return {"removed": name}

    return await respond(request, work)
