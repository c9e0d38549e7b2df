"""CompreFace's API under /api/v1 (header ``x-api-key``), over the service: docs/compat.md
describes every route and difference.

Recognition service, /api/v1/recognition:
POST   /recognize                    file (multipart, or JSON base64): 1 quota unit
POST   /subjects                     {"subject"}: a person with no faces yet
GET    /subjects                     every person's name
PUT    /subjects/{s}                 {"subject": new}: rename (merges into new)
DELETE /subjects/{s}                 one person; without {s}: everyone
POST   /faces?subject=               file: enrol one face
GET    /faces?page=&size=&subject=
DELETE /faces?subject=               a person's faces (and the person)
DELETE /faces/{image_id}             one face
POST   /faces/delete                 [image_id, ...]: several faces
GET    /faces/{image_id}/img         the enrolled face as kept: its aligned crop, a JPEG
POST   /faces/{image_id}/verify      file: its faces against that enrolled face, 1 unit
Detection service:    POST /api/v1/detection/detect        file: faces, 1 unit
Verification service: POST /api/v1/verification/verify     source_image, target_image: 1 unit

The gallery routes need an admin key, as /api/v2/gallery/ does, and take no quota. Every other
path under /api/v1/ answers in CompreFace's error body too.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match

from server.catalog import FACES_TYPE
from server.http.compreface import shapes
from server.http.compreface.errors import (
    INVALID_VALUE,
    MISSING_PARAMETER,
    UNDEFINED,
    CompreFaceError,
    compreface_response,
    error_body,
    subject_not_found,
)
from server.http.compreface.requests import (
    MAX_FIELD_BYTES,
    AdminKey,
    ApiKey,
    bool_query,
    face_plugins,
    int_query,
    json_body,
    probability_query,
    read_image,
    read_images,
    subject_body,
    subject_query,
)
from server.http.disconnect import until_disconnected
from server.http.envelope import NO_SNIFF_NO_STORE
from server.http.observability import GALLERY_TYPE
from server.http.respond import dialect_route
from server.http.state import Service
from server.service.application import FaceNotFoundError, PersonNotFoundError
from server.service.faces import DescribedImage, FaceDescription
from server.telemetry.requests import note_answer, note_type

PREFIX = "/api/v1"
router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=dialect_route(error_body))

MAX_PREDICTION_COUNT = 100
DEFAULT_PAGE_SIZE = 20  # CompreFace's (Spring's) page size
MAX_PAGE_SIZE = 1000
MAX_FACE_ID_CHARS = 64  # a UUID, or an older face's integer id
MAX_FACES_PER_DELETE = 1000


def answer(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=NO_SNIFF_NO_STORE)


def face_id(image_id: str) -> str:
    """An image id as the gallery's face id; 404 (code 11) for what no face id can be."""
    if (
        not image_id
        or len(image_id) > MAX_FACE_ID_CHARS
        or not image_id.isascii()
        or not image_id.isprintable()
    ):
        raise FaceNotFoundError(f"Image {image_id[:MAX_FACE_ID_CHARS]} not found")
    return image_id


def _limit(request: Request) -> int:
    return int_query(request, "limit", 0, 0, 2**31 - 1)


# --- recognition ---------------------------------------------------------------------------


@router.post("/recognition/recognize")
async def recognize(request: Request, service: Service, key: ApiKey) -> JSONResponse:
    note_type(FACES_TYPE)
    # The query's checks come before the upload is read, as CompreFace's do.
    limit = _limit(request)
    prediction_count = int_query(request, "prediction_count", 1, 1, MAX_PREDICTION_COUNT)
    det_prob_threshold = probability_query(request, "det_prob_threshold")
    plugins = face_plugins(request)
    status = bool_query(request, "status", False)
    bool_query(request, "detect_faces", True)  # checked; faces are always detected
    _, data = await read_image(request, service.settings)
    analysed = await until_disconnected(
        request, service.recognize_candidates(key, data, prediction_count)
    )
    note_answer(analysed)
    result = []
    for found in shapes.kept_faces(analysed["faces"], det_prob_threshold, limit):
        entry = shapes.face(found, plugins)
        # Similarity is our match confidence on a 0..1 scale (docs/compat.md).
        entry["subjects"] = [
            {"subject": match["name"], "similarity": shapes.ratio(match["confidence"])}
            for match in found["matches"]
        ]
        result.append(entry)
    body: dict[str, Any] = {"result": result}
    if status:
        model = analysed["model"]
        body["plugins_versions"] = shapes.plugins_versions(f"{model['name']} {model['version']}")
    return answer(body)


# --- subjects ------------------------------------------------------------------------------


@router.post("/recognition/subjects")
async def create_subject(request: Request, service: Service, key: AdminKey) -> JSONResponse:
    note_type(GALLERY_TYPE)
    name = await subject_body(request)
    return answer({"subject": await service.add_person(name, actor=service.actor(key))}, 201)


@router.get("/recognition/subjects")
async def list_subjects(service: Service, _key: AdminKey) -> JSONResponse:
    note_type(GALLERY_TYPE)
    return answer({"subjects": await service.people_names()})


@router.put("/recognition/subjects/{subject:path}")
async def rename_subject(
    request: Request, service: Service, key: AdminKey, subject: str
) -> JSONResponse:
    note_type(GALLERY_TYPE)
    body = await json_body(request, MAX_FIELD_BYTES)
    new_name = body.get("subject")
    if not isinstance(new_name, str) or not new_name.strip() or new_name.strip() == subject:
        return answer({"updated": False})  # as CompreFace: nothing to do
    try:
        await service.rename_person(subject, new_name, actor=service.actor(key))
    except PersonNotFoundError:
        raise subject_not_found(subject) from None
    return answer({"updated": True})


@router.delete("/recognition/subjects/{subject:path}")
async def delete_subject(service: Service, key: AdminKey, subject: str) -> JSONResponse:
    note_type(GALLERY_TYPE)
    try:
        await service.remove_person(subject, actor=service.actor(key))
    except PersonNotFoundError:
        raise subject_not_found(subject) from None
    return answer({"subject": subject})


@router.delete("/recognition/subjects")
async def delete_all_subjects(service: Service, key: AdminKey) -> JSONResponse:
    note_type(GALLERY_TYPE)
    people, _faces = await service.remove_everyone(actor=service.actor(key))
    return answer({"deleted": people})


# --- faces ---------------------------------------------------------------------------------


@router.post("/recognition/faces")
async def add_face(request: Request, service: Service, key: AdminKey) -> JSONResponse:
    note_type(GALLERY_TYPE)
    subject = subject_query(request)
    if subject is None:
        raise CompreFaceError(
            400, MISSING_PARAMETER, "Required request parameter 'subject' is not present"
        )
    det_prob_threshold = probability_query(request, "det_prob_threshold")
    source, data = await read_image(request, service.settings)
    enrolled = await service.enrol(
        subject, [(source, data)], actor=service.actor(key), min_probability=det_prob_threshold
    )
    return answer({"image_id": str(enrolled["face_ids"][0]), "subject": enrolled["name"]}, 201)


@router.get("/recognition/faces")
async def list_faces(request: Request, service: Service, _key: AdminKey) -> JSONResponse:
    note_type(GALLERY_TYPE)
    page = int_query(request, "page", 0, 0, 2**31 - 1)
    size = int_query(request, "size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    faces, total = await service.faces(subject_query(request), page * size, size)
    return answer(
        {
            "faces": [{"image_id": str(face), "subject": name} for face, name in faces],
            "page_number": page,
            "page_size": size,
            "total_pages": math.ceil(total / size),
            "total_elements": total,
        }
    )


@router.delete("/recognition/faces")
async def delete_faces(request: Request, service: Service, key: AdminKey) -> JSONResponse:
    note_type(GALLERY_TYPE)
    subject = subject_query(request)
    actor = service.actor(key)
    if subject is None:  # CompreFace: every face of every subject
        _people, faces = await service.remove_everyone(actor=actor)
        return answer({"deleted": faces})
    try:
        return answer({"deleted": await service.remove_person(subject, actor=actor)})
    except PersonNotFoundError:
        return answer({"deleted": 0})  # as CompreFace: nothing was there to remove


@router.post("/recognition/faces/delete")
async def delete_faces_by_id(request: Request, service: Service, key: AdminKey) -> JSONResponse:
    """Several faces by id; the ones that exist are deleted and listed, the others ignored
    (as CompreFace)."""
    note_type(GALLERY_TYPE)
    ids = await json_body(request, MAX_FIELD_BYTES * 4, expected=list)
    if len(ids) > MAX_FACES_PER_DELETE or not all(isinstance(i, str) for i in ids):
        raise CompreFaceError(
            400, INVALID_VALUE, f"the body must be a list of at most {MAX_FACES_PER_DELETE} ids"
        )
    wanted = [face_id(i) for i in dict.fromkeys(ids)]
    deleted = await service.remove_faces(wanted, actor=service.actor(key))
    return answer([{"image_id": face, "subject": name} for face, name in deleted])


@router.delete("/recognition/faces/{image_id}")
async def delete_face(service: Service, key: AdminKey, image_id: str) -> JSONResponse:
    note_type(GALLERY_TYPE)
    face = face_id(image_id)
    try:
        name = await service.remove_face(face, actor=service.actor(key))
    except FaceNotFoundError:
        raise FaceNotFoundError(f"Image {image_id} not found") from None
    return answer({"image_id": face, "subject": name})


@router.get("/recognition/faces/{image_id}/img")
async def face_image(service: Service, _key: AdminKey, image_id: str) -> Response:
    """The enrolled face as the gallery keeps it: its aligned crop (150 x 150), not the
    original photo (docs/compat.md)."""
    note_type(GALLERY_TYPE)
    try:
        jpeg = await service.face_crop_jpeg(face_id(image_id))
    except FaceNotFoundError:
        raise FaceNotFoundError(f"Image {image_id} not found") from None
    return Response(jpeg, media_type="image/jpeg", headers=NO_SNIFF_NO_STORE)


def _faces_and_descriptions(
    image: DescribedImage, det_prob_threshold: float | None, limit: int
) -> list[tuple[dict[str, Any], FaceDescription]]:
    shaped = [(face.shape(), face) for face in image.faces]
    kept = shapes.kept_faces([s for s, _ in shaped], det_prob_threshold, limit)
    return [(s, face) for s, face in shaped if any(s is k for k in kept)]


@router.post("/recognition/faces/{image_id}/verify")
async def verify_with_face(
    request: Request, service: Service, key: ApiKey, image_id: str
) -> JSONResponse:
    """The posted image's faces, each with its similarity to one enrolled face."""
    note_type(FACES_TYPE)
    face = face_id(image_id)
    limit = _limit(request)
    det_prob_threshold = probability_query(request, "det_prob_threshold")
    plugins = face_plugins(request)
    status = bool_query(request, "status", False)
    _, data = await read_image(request, service.settings)
    try:
        compared = await until_disconnected(request, service.verify_with_face(key, face, data))
    except FaceNotFoundError:
        raise FaceNotFoundError(f"Image {image_id} not found") from None
    result = []
    for shaped, described in _faces_and_descriptions(compared.image, det_prob_threshold, limit):
        entry = shapes.face(shaped, plugins, described.descriptor)
        entry["similarity"] = shapes.ratio(compared.similarity(described))
        result.append(entry)
    result.sort(key=lambda entry: entry["similarity"], reverse=True)
    body: dict[str, Any] = {"result": result}
    if status:
        body["plugins_versions"] = shapes.plugins_versions(compared.model)
    return answer(body)


# --- detection and verification services ---------------------------------------------------


@router.post("/detection/detect")
async def detect(request: Request, service: Service, key: ApiKey) -> JSONResponse:
    note_type(FACES_TYPE)
    limit = _limit(request)
    det_prob_threshold = probability_query(request, "det_prob_threshold")
    plugins = face_plugins(request)
    status = bool_query(request, "status", False)
    _, data = await read_image(request, service.settings)
    image = await until_disconnected(request, service.describe_faces(key, data))
    result = [
        shapes.face(shaped, plugins, described.descriptor)
        for shaped, described in _faces_and_descriptions(image, det_prob_threshold, limit)
    ]
    body: dict[str, Any] = {"result": result}
    if status:
        body["plugins_versions"] = shapes.plugins_versions(service.face_model_name())
    return answer(body)


@router.post("/verification/verify")
async def verify(request: Request, service: Service, key: ApiKey) -> JSONResponse:
    """The source image's most probable face against every face of the target image."""
    note_type(FACES_TYPE)
    limit = _limit(request)
    det_prob_threshold = probability_query(request, "det_prob_threshold")
    plugins = face_plugins(request)
    status = bool_query(request, "status", False)
    (_, source), (_, target) = await read_images(
        request, service.settings, ("source_image", "target_image")
    )
    source_image, target_image = await until_disconnected(
        request, service.describe_face_pair(key, source, target)
    )
    (source_shape, source_face), *_ = _faces_and_descriptions(source_image, det_prob_threshold, 0)
    matches = []
    for shaped, described in _faces_and_descriptions(target_image, det_prob_threshold, limit):
        entry = shapes.face(shaped, plugins, described.descriptor)
        entry["similarity"] = shapes.ratio(service.face_similarity(source_face, described))
        matches.append(entry)
    matches.sort(key=lambda entry: entry["similarity"], reverse=True)
    outcome: dict[str, Any] = {
        "source_image_face": shapes.face(source_shape, plugins, source_face.descriptor),
        "face_matches": matches,
    }
    if status:
        outcome["plugins_versions"] = shapes.plugins_versions(service.face_model_name())
    return answer({"result": [outcome]})


# --- every other path ----------------------------------------------------------------------

@router.api_route(
    "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
async def not_served(request: Request) -> JSONResponse:
    """Paths and methods CompreFace's clients may call that are not served here, answered in
    CompreFace's error body (a client reading ``message`` never meets another shape)."""
    for route in router.routes:
        if getattr(route, "endpoint", None) is not not_served and (
            isinstance(route, BaseRoute) and route.matches(request.scope)[0] is Match.PARTIAL
        ):
            return compreface_response(CompreFaceError(405, UNDEFINED, "Method Not Allowed"))
    path = request.url.path[:200]
    return compreface_response(CompreFaceError(404, UNDEFINED, f"No endpoint {path}"))
