"""/api/v2/gallery/: the operator's gallery of known people, for admin keys only.

POST   /api/v2/gallery/                       apikey, name, file (one or more): enrol
GET    /api/v2/gallery/?apikey=…              list people and their faces
DELETE /api/v2/gallery/{name}?apikey=…        remove a person and their descriptors
DELETE /api/v2/gallery/{name}/faces/{id}?apikey=…   remove one face
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from server.errors import ApiError, ErrorKind
from server.http.respond import V2Route, ok
from server.http.state import Service
from server.http.v2.keyed import Admin

router = APIRouter(route_class=V2Route)
MAX_FACE_ID_CHARS = 64  # a UUID, or an older face's integer id


def _face_id(text: str) -> str:
    """The face id of a route (a UUID, or an integer for faces enrolled before UUIDs), or
    421 for what no face id can be."""
    if not text or len(text) > MAX_FACE_ID_CHARS or not text.isascii() or not text.isprintable():
        raise ApiError(ErrorKind.INVALID_PARAMETER, "face id (no such face)")
    return text


@router.post("/api/v2/gallery/")
@router.post("/api/v2/gallery", include_in_schema=False)
async def enrol(form: Admin, service: Service) -> JSONResponse:
    name = form.upload.fields.get("name", "").strip()
    if not name:
        raise ApiError(ErrorKind.INVALID_PARAMETER, "name (missing)")
    photos = form.upload.files
    if not photos:
        raise ApiError(ErrorKind.INVALID_PARAMETER, "file (missing)")
    return ok(await service.enrol(name, photos, actor=service.actor(form.key)))


@router.get("/api/v2/gallery/")
@router.get("/api/v2/gallery", include_in_schema=False)
async def people(_form: Admin, service: Service) -> JSONResponse:
    return ok({"people": await service.people()})


# Names may hold "/" (path converters); this route comes first, as the person's would
# also match ".../faces/ID".
@router.delete("/api/v2/gallery/{name:path}/faces/{face_id}")
async def remove_face(form: Admin, service: Service, name: str, face_id: str) -> JSONResponse:
    face = _face_id(face_id)
    await service.remove_face(face, name=name, actor=service.actor(form.key))
    return ok({"removed": {"name": name, "face": face}})


@router.delete("/api/v2/gallery/{name:path}")
async def remove_person(form: Admin, service: Service, name: str) -> JSONResponse:
    await service.remove_person(name, actor=service.actor(form.key))
    return ok({"removed": name})
