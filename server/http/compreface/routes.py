"""CompreFace's recognition service under /api/v1 (header ``x-api-key``), over our pipeline,
gallery, keys and quota; docs/compat.md describes every route and difference.

POST   /api/v1/recognition/recognize            file (multipart, or JSON base64): 1 quota unit
POST   /api/v1/recognition/subjects             {"subject"}: a person with no faces yet
GET    /api/v1/recognition/subjects             every person's name
PUT    /api/v1/recognition/subjects/{s}         {"subject": new}: rename (merges into new)
DELETE /api/v1/recognition/subjects/{s}         one person; without {s}: everyone
POST   /api/v1/recognition/faces?subject=       file: enrol one face
GET    /api/v1/recognition/faces?page=&size=&subject=
DELETE /api/v1/recognition/faces?subject=       a person's faces (and the person)
DELETE /api/v1/recognition/faces/{image_id}     one face

The gallery routes need an admin key, as /api/v2/gallery/ does, and take no quota.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from models.celebrities.dlib_faces import CANDIDATES_PARAM
from server.errors import ApiError, ErrorKind
from server.http.compreface.errors import (
    BAD_FILE,
    INVALID_VALUE,
    MISSING_PARAMETER,
    MISSING_PART,
    NO_FACE,
    NO_FACE_MESSAGE,
    CompreFaceError,
    error_body,
    missing_header,
    subject_not_found,
)
from server.http.disconnect import until_disconnected
from server.http.respond import NO_SNIFF_NO_STORE
from server.http.state import AppState, State, get_state
from server.http.upload import (
    FORM_OVERHEAD_BYTES,
    MAX_FIELD_BYTES,
    UploadTooLargeError,
    read_upload,
)
from server.service.admission import admit
from server.service.form import Upload
from server.service.gallery import FACES_TYPE, enrol_in_gallery
from server.store.audit import api_actor
from server.store.gallery import FaceNotFoundError, PersonNotFoundError
from server.store.keys import KeyRecord
from server.telemetry.requests import note_answer, note_type

router = APIRouter(prefix="/api/v1/recognition", include_in_schema=False)

TYPE = FACES_TYPE  # the type whose model enrols and recognises
API_KEY_HEADER = "x-api-key"
MAX_PREDICTION_COUNT = 100
DEFAULT_PAGE_SIZE = 20  # CompreFace's (Spring's) page size
MAX_PAGE_SIZE = 1000
PLUGINS_SEPARATOR = re.compile(r"[,\s]+")
LANDMARKS_PLUGIN = "landmarks"
BASE64_FILE_NAME = "file"  # a JSON body's image has no file name of its own


async def answer(
    request: Request, work: Callable[[], Awaitable[Any]], status: int = 200
) -> JSONResponse:
    """``work()``'s body with ``status``, or its error as CompreFace's ``{message, code}``."""
    with get_state(request).trimmer.request():
        try:
            body = await work()
        except ClientDisconnect:
            return error_body(request, ApiError(ErrorKind.CLIENT_CLOSED))
        except Exception as exc:
            return error_body(request, exc)
        return JSONResponse(body, status_code=status, headers=NO_SNIFF_NO_STORE)


def api_key(request: Request) -> str:
    key = request.headers.get(API_KEY_HEADER, "").strip()
    if not key:
        raise missing_header()
    return key


async def admin_key(request: Request, state: AppState) -> KeyRecord:
    """The request's key, if it is an admin's: the gallery is the operator's."""
    key = await run_in_threadpool(state.keys.authenticate, api_key(request))
    if key is None:
        raise ApiError(ErrorKind.APIKEY_INVALID)
    if not key.is_admin:
        raise ApiError(ErrorKind.APIKEY_NOT_ADMIN)
    return key


# --- query parameters ----------------------------------------------------------------------


def _invalid(name: str, expected: str) -> CompreFaceError:
    return CompreFaceError(400, INVALID_VALUE, f"{name} must be {expected}")


def int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or not low <= int(raw) <= high:
        raise _invalid(name, f"an integer from {low} to {high}")
    return int(raw)


def probability_query(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise _invalid(name, "a number from 0 to 1")
    return value


def bool_query(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise _invalid(name, "true or false")
    return raw == "true"


def subject_query(request: Request) -> str | None:
    subject = request.query_params.get("subject")
    return subject.strip() if subject is not None and subject.strip() else None


# --- bodies --------------------------------------------------------------------------------


def _is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() in (
        "application/json",
        "text/json",
    )


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(ErrorKind.IMAGE_TOO_LARGE)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ApiError(ErrorKind.IMAGE_TOO_LARGE)
    try:
        parsed = await run_in_threadpool(json.loads, bytes(body))
    except (ValueError, UnicodeDecodeError):
        raise CompreFaceError(400, INVALID_VALUE, "the body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise CompreFaceError(400, INVALID_VALUE, "the body must be a JSON object")
    return parsed


def _decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CompreFaceError(400, BAD_FILE, "Provided value is not Base64") from None


async def read_image(request: Request, state: AppState) -> tuple[str, bytes]:
    """The posted image and its file name: multipart part ``file``, or JSON ``{"file":
    base64}``; within the upload size limit (413 beyond it)."""
    limit = state.settings.max_upload_bytes
    if _is_json(request):
        # Base64 is 4/3 of the bytes it encodes.
        body = await _json_body(request, limit * 4 // 3 + FORM_OVERHEAD_BYTES)
        encoded = body.get("file")
        if not isinstance(encoded, str) or not encoded.strip():
            raise CompreFaceError(400, MISSING_PART, "Required part file is missing")
        data = await run_in_threadpool(_decode_base64, encoded)
        if len(data) > limit:
            raise ApiError(ErrorKind.IMAGE_TOO_LARGE)
        return BASE64_FILE_NAME, data
    try:
        upload = await read_upload(request, limit)
    except UploadTooLargeError:
        raise ApiError(ErrorKind.IMAGE_TOO_LARGE) from None
    if not upload.files:
        raise CompreFaceError(400, MISSING_PART, "Required part file is missing")
    return upload.files[0]


async def subject_body(request: Request) -> str:
    """The ``subject`` of a JSON body ``{"subject": name}``."""
    body = await _json_body(request, MAX_FIELD_BYTES)
    subject = body.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        raise CompreFaceError(400, INVALID_VALUE, "Subject name is empty")
    return subject.strip()


# --- recognition ---------------------------------------------------------------------------


def _box(face: dict[str, Any]) -> dict[str, Any]:
    box = face["box"]
    return {
        # Detection confidence back on CompreFace's 0..1 scale.
        "probability": round(face["confidence"] / 100.0, 4),
        "x_max": box["left"] + box["width"],
        "y_max": box["top"] + box["height"],
        "x_min": box["left"],
        "y_min": box["top"],
    }


def recognition_result(
    faces: list[dict[str, Any]],
    *,
    det_prob_threshold: float | None,
    limit: int,
    landmarks: bool,
) -> list[dict[str, Any]]:
    """The analysis' faces in CompreFace's shape; NoFace (28) when none is left after
    ``det_prob_threshold``. ``limit`` > 0 keeps the largest faces, as CompreFace does."""
    if det_prob_threshold is not None:
        faces = [f for f in faces if f["confidence"] / 100.0 >= det_prob_threshold]
    if limit > 0 and len(faces) > limit:
        largest = sorted(faces, key=lambda f: f["box"]["width"] * f["box"]["height"])[-limit:]
        faces = [f for f in faces if any(f is kept for kept in largest)]
    if not faces:
        raise CompreFaceError(400, NO_FACE, NO_FACE_MESSAGE)
    result = []
    for face in faces:
        entry: dict[str, Any] = {
            "box": _box(face),
            "subjects": [
                # Similarity is our match confidence on a 0..1 scale (docs/compat.md).
                {"subject": match["name"], "similarity": round(match["confidence"] / 100.0, 4)}
                for match in face["matches"]
            ],
        }
        if landmarks:
            entry["landmarks"] = [[point["x"], point["y"]] for point in face["landmarks"].values()]
        result.append(entry)
    return result


@router.post("/recognize")
async def recognize(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        note_type(TYPE)
        key = api_key(request)
        # The query's checks come before the upload is read, as CompreFace's do.
        limit = int_query(request, "limit", 0, 0, 2**31 - 1)
        prediction_count = int_query(request, "prediction_count", 1, 1, MAX_PREDICTION_COUNT)
        det_prob_threshold = probability_query(request, "det_prob_threshold")
        plugins = PLUGINS_SEPARATOR.split(request.query_params.get("face_plugins", "").lower())
        status = bool_query(request, "status", False)
        bool_query(request, "detect_faces", True)  # checked; faces are always detected
        source, data = await read_image(request, state)
        upload = Upload(fields={"apikey": key, "type": TYPE}, file=data, files=[(source, data)])
        admitted = await admit(
            state.keys,
            state.results,
            state.pipeline,
            upload,
            False,
            route_params={CANDIDATES_PARAM: prediction_count},
        )
        analysed = await until_disconnected(request, state.service.analyze(admitted))
        note_answer(analysed)
        body: dict[str, Any] = {
            "result": recognition_result(
                analysed["faces"],
                det_prob_threshold=det_prob_threshold,
                limit=limit,
                landmarks=LANDMARKS_PLUGIN in plugins,  # other plugins are ignored
            )
        }
        if status:
            model = analysed["model"]
            body["plugins_versions"] = {
                "detector": "mtcnn",
                "calculator": f"{model['name']} {model['version']}",
            }
        return body

    return await answer(request, work)


# --- subjects ------------------------------------------------------------------------------


@router.post("/subjects")
async def create_subject(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        actor = api_actor((await admin_key(request, state)).name)
        name = await subject_body(request)
        return {"subject": await run_in_threadpool(state.gallery.add_person, name, actor=actor)}

    return await answer(request, work, status=201)


@router.get("/subjects")
async def list_subjects(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        await admin_key(request, state)
        people = await run_in_threadpool(state.gallery.people)
        return {"subjects": [person["name"] for person in people]}

    return await answer(request, work)


@router.put("/subjects/{subject:path}")
async def rename_subject(request: Request, state: State, subject: str) -> JSONResponse:
    async def work() -> dict[str, Any]:
        actor = api_actor((await admin_key(request, state)).name)
        body = await _json_body(request, MAX_FIELD_BYTES)
        new_name = body.get("subject")
        if not isinstance(new_name, str) or not new_name.strip() or new_name.strip() == subject:
            return {"updated": False}  # as CompreFace: nothing to do
        try:
            await run_in_threadpool(
                state.gallery.rename_person, subject, new_name, actor=actor
            )
        except PersonNotFoundError:
            raise subject_not_found(subject) from None
        return {"updated": True}

    return await answer(request, work)


@router.delete("/subjects/{subject:path}")
async def delete_subject(request: Request, state: State, subject: str) -> JSONResponse:
    async def work() -> dict[str, Any]:
        actor = api_actor((await admin_key(request, state)).name)
        try:
            await run_in_threadpool(state.gallery.remove_person, subject, actor=actor)
        except PersonNotFoundError:
            raise subject_not_found(subject) from None
        return {"subject": subject}

    return await answer(request, work)


@router.delete("/subjects")
async def delete_all_subjects(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        actor = api_actor((await admin_key(request, state)).name)
        people, _faces = await run_in_threadpool(state.gallery.remove_everyone, actor=actor)
        return {"deleted": people}

    return await answer(request, work)


# --- faces ---------------------------------------------------------------------------------


@router.post("/faces")
async def add_face(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        actor = api_actor((await admin_key(request, state)).name)
        subject = subject_query(request)
        if subject is None:
            raise CompreFaceError(
                400, MISSING_PARAMETER, "Required request parameter 'subject' is not present"
            )
        det_prob_threshold = probability_query(request, "det_prob_threshold")
        source, data = await read_image(request, state)
        enrolled = await enrol_in_gallery(
            state.pipeline, state.gallery, subject, [(source, data)],
            actor=actor, min_probability=det_prob_threshold,
        )
        return {"image_id": enrolled["face_ids"][0], "subject": enrolled["name"]}

    return await answer(request, work, status=201)


@router.get("/faces")
async def list_faces(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        await admin_key(request, state)
        page = int_query(request, "page", 0, 0, 2**31 - 1)
        size = int_query(request, "size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        faces, total = await run_in_threadpool(
            state.gallery.faces, subject_query(request), page * size, size
        )
        return {
            "faces": [{"image_id": face_id, "subject": name} for face_id, name in faces],
            "page_number": page,
            "page_size": size,
            "total_pages": math.ceil(total / size),
            "total_elements": total,
        }

    return await answer(request, work)


@router.delete("/faces")
async def delete_faces(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        actor = api_actor((await admin_key(request, state)).name)
        subject = subject_query(request)
        if subject is None:  # CompreFace: every face of every subject
            _people, faces = await run_in_threadpool(state.gallery.remove_everyone, actor=actor)
            return {"deleted": faces}
        try:
            return {
                "deleted": await run_in_threadpool(
                    state.gallery.remove_person, subject, actor=actor
                )
            }
        except PersonNotFoundError:
            return {"deleted": 0}  # as CompreFace: nothing was there to remove

    return await answer(request, work)


@router.delete("/faces/{image_id}")
async def delete_face(request: Request, state: State, image_id: str) -> JSONResponse:
    async def work() -> dict[str, Any]:
        actor = api_actor((await admin_key(request, state)).name)
        not_found = FaceNotFoundError(f"Image {image_id} not found")
        try:
            name = await run_in_threadpool(state.gallery.remove_face_by_id, image_id, actor=actor)
        except FaceNotFoundError:
            raise not_found from None
        return {"image_id": image_id, "subject": name}

    return await answer(request, work)
