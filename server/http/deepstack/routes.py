"""The DeepStack / CodeProject.AI routes (multipart form, file ``image``, field ``api_key``):

POST /v1/vision/detection, /v1/vision/custom/<model>    objects, boxes only
POST /v1/vision/custom/list                              the objects model's name
POST /v1/vision/face, /v1/vision/face/                   detect_faces
POST /v1/vision/face/recognize                           celebrities against the gallery
POST /v1/vision/face/register, /face/list, /face/delete  the gallery
POST /v1/vision/face/match                               two faces' similarity
POST /v1/vision/scene                                    the ImageNet classifier's best label
POST /v1/vision/ocr, /v1/image/ocr                       detect_text

Every call is one operation of the service (server/service/application.py), charged one
unit each like /api/v2/'s; the answers are translated in shapes.py, and every error the
routes raise is written in DeepStack's envelope by the router's route class.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from server.catalog import DETECT_FACES, DETECT_TEXT, FACES_TYPE, MAX_INT, OBJECTS
from server.errors import ApiError, ErrorKind
from server.http.deepstack import shapes
from server.http.disconnect import until_disconnected
from server.http.observability import GALLERY_TYPE
from server.http.respond import answered_error, dialect_route
from server.http.state import Service
from server.http.upload import UploadTooLargeError, read_upload
from server.service.application import ApplicationService, GalleryError, KeyRecord
from server.service.form import Upload
from server.telemetry.requests import note_answer, note_type

log = logging.getLogger(__name__)

PREFIX = "/v1/vision"


def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, shapes.DeepStackFailureError):
        return shapes.error_response(exc)
    return shapes.error_response(answered_error(request, exc))


router = APIRouter(route_class=dialect_route(_error))


@dataclass(frozen=True)
class Call:
    """A DeepStack call: its form, and the key it is charged to."""

    upload: Upload
    key: KeyRecord
    anonymous: bool  # came without a key: DEEPSTACK_ANONYMOUS_KEY's

    def image(self) -> bytes:
        """The ``image`` file, else the first file of any name; 400 without one."""
        data = self.upload.files_by_field.get(shapes.IMAGE_FIELD, self.upload.file)
        if data is None:
            raise ApiError(ErrorKind.NO_DATA)
        return data

    def field(self, name: str) -> str:
        return self.upload.fields.get(name, "").strip()


async def read_call(request: Request, service: Service) -> Call:
    """The form's fields and files (under any field name, within the size limit: 413) and
    the key the call is charged to: the one sent, else DEEPSTACK_ANONYMOUS_KEY's; 401 for an
    unknown key, or none without that setting."""
    try:
        upload = await read_upload(
            request,
            service.settings.max_upload_bytes,
            file_fields=frozenset({shapes.IMAGE_FIELD}),
            any_filename=True,
        )
    except UploadTooLargeError:
        raise ApiError(ErrorKind.IMAGE_TOO_LARGE) from None
    sent = upload.fields.get(shapes.API_KEY_FIELD, "").strip()
    if sent:
        return Call(upload, await service.authenticate(sent), False)
    name = service.settings.deepstack_anonymous_key
    if not name:
        raise ApiError(ErrorKind.APIKEY_MISSING)
    key = await service.key_named(name)
    if key is None:
        log.warning("IMAGERECOGNIZE_DEEPSTACK_ANONYMOUS_KEY names no active key: %r", name)
        raise ApiError(ErrorKind.APIKEY_MISSING)
    return Call(upload, key, True)


DeepStackCall = Annotated[Call, Depends(read_call)]


async def read_gallery_call(call: DeepStackCall, service: Service) -> Call:
    """An admin key, or no key where DEEPSTACK_ANONYMOUS_GALLERY allows it (else 401)."""
    note_type(GALLERY_TYPE)  # for the access log and metrics
    allowed = call.anonymous and service.settings.deepstack_anonymous_gallery
    if not (call.key.is_admin or allowed):
        raise ApiError(ErrorKind.APIKEY_NOT_ADMIN)
    return call


GalleryCall = Annotated[Call, Depends(read_gallery_call)]


async def _analyse(
    request: Request,
    service: ApplicationService,
    call: Call,
    type_: str,
    params: dict[str, Any],
    data: bytes,
) -> tuple[dict[str, Any], dict[str, int]]:
    """One analysis, one unit of quota: its /api/v2/ ``data`` and CodeProject.AI's timings."""
    note_type(type_)
    started = time.perf_counter()
    result = await until_disconnected(request, service.analyze(call.key, type_, params, data))
    note_answer(result)
    took = round((time.perf_counter() - started) * 1000.0)
    return result, {"inferenceMs": round(result["elapsed_ms"]), "processMs": took}


def _predictions(
    predictions: list[dict[str, Any]], timings: dict[str, int], message: str
) -> JSONResponse:
    return shapes.success_response(
        {"predictions": predictions, "count": len(predictions), "message": message, **timings}
    )


def _min_confidence(call: Call, default: float) -> float:
    return shapes.parse_min_confidence(call.upload.fields.get(shapes.MIN_CONFIDENCE_FIELD), default)


async def _detection(request: Request, service: ApplicationService, call: Call) -> JSONResponse:
    min_confidence = _min_confidence(call, shapes.DETECTION_MIN_CONFIDENCE)
    params = {"max_labels": MAX_INT, "min_confidence": shapes.percent_floor(min_confidence)}
    result, timings = await _analyse(request, service, call, OBJECTS.name, params, call.image())
    predictions = shapes.detections(result["objects"], min_confidence)
    message = shapes.names_found(predictions, "label", "No objects found")
    return _predictions(predictions, timings, message)


@router.post(f"{PREFIX}/detection")
async def detection(request: Request, service: Service, call: DeepStackCall) -> JSONResponse:
    return await _detection(request, service, call)


def _objects_models(service: ApplicationService) -> list[str]:
    """The names the objects model is served under (one: the model answering objects)."""
    name = service.model_name(OBJECTS.name)
    return [name] if name is not None else []


@router.post(f"{PREFIX}/custom/list")
@router.get(f"{PREFIX}/custom/list", include_in_schema=False)  # one operation id per function
async def custom_list(service: Service) -> JSONResponse:
    # No key needed: it names models, costs nothing, and Blue Iris asks before configuring.
    return shapes.success_response({"models": _objects_models(service)})


async def served_custom_model(model: str, service: Service) -> str:
    """The custom model a path names: 404 for one not served, before the form is read, as
    DeepStack, where a custom model that is not installed has no route."""
    served = _objects_models(service)
    if model not in served:
        named = ", ".join(served) or "none"
        raise shapes.DeepStackFailureError(404, f"no custom model {model[:100]!r}; served: {named}")
    return model


@router.post(f"{PREFIX}/custom/{{model}}", dependencies=[Depends(served_custom_model)])
async def custom(request: Request, service: Service, call: DeepStackCall) -> JSONResponse:
    return await _detection(request, service, call)


@router.post(f"{PREFIX}/face")
@router.post(f"{PREFIX}/face/")
async def face(request: Request, service: Service, call: DeepStackCall) -> JSONResponse:
    min_confidence = _min_confidence(call, shapes.FACE_MIN_CONFIDENCE)
    result, timings = await _analyse(request, service, call, DETECT_FACES.name, {}, call.image())
    predictions = shapes.faces(result["objects"], min_confidence)
    message = shapes.count_found(predictions, "face", "No faces found")
    return _predictions(predictions, timings, message)


@router.post(f"{PREFIX}/face/recognize")
async def recognize(request: Request, service: Service, call: DeepStackCall) -> JSONResponse:
    min_confidence = _min_confidence(call, shapes.RECOGNITION_MIN_CONFIDENCE)
    result, timings = await _analyse(request, service, call, FACES_TYPE, {}, call.image())
    predictions = shapes.recognitions(
        result["objects"], result.get("unrecognized", []), min_confidence
    )
    message = shapes.names_found(predictions, "userid", "No faces found")
    return _predictions(predictions, timings, message)


def _userid(call: Call) -> str:
    userid = call.field(shapes.USERID_FIELD)
    if not userid:
        raise ApiError(ErrorKind.INVALID_PARAMETER, "userid not specified")
    return userid


@router.post(f"{PREFIX}/face/register")
async def register(service: Service, call: GalleryCall) -> JSONResponse:
    userid = _userid(call)
    photos = call.upload.files
    if not photos:
        raise ApiError(ErrorKind.NO_DATA)
    # Added to the person's faces: DeepStack overwrote them (docs/compat.md).
    await service.enrol(userid, photos, actor=service.actor(call.key))
    return shapes.success_response({"message": "face added"})


@router.post(f"{PREFIX}/face/list")
async def face_list(service: Service, _call: GalleryCall) -> JSONResponse:
    return shapes.success_response({"faces": await service.people_names()})


@router.post(f"{PREFIX}/face/delete")
async def face_delete(service: Service, call: GalleryCall) -> JSONResponse:
    userid = _userid(call)
    # DeepStack answers success for a user it does not know, too.
    with contextlib.suppress(GalleryError):
        await service.remove_person(userid, actor=service.actor(call.key))
    return shapes.success_response({})


@router.post(f"{PREFIX}/face/match")
async def face_match(request: Request, service: Service, call: DeepStackCall) -> JSONResponse:
    if len(call.upload.files) < 2:
        raise ApiError(ErrorKind.INVALID_PARAMETER, "face/match needs two image files")
    note_type(FACES_TYPE)
    (_, first), (_, second) = call.upload.files[:2]
    # One unit for the pair, kept only when the comparison is answered.
    similarity = await until_disconnected(request, service.compare_faces(call.key, first, second))
    return shapes.success_response({"similarity": shapes.ratio(similarity)})


@router.post(f"{PREFIX}/scene")
async def scene(request: Request, service: Service, call: DeepStackCall) -> JSONResponse:
    params = {"max_labels": MAX_INT, "min_confidence": 0}
    result, timings = await _analyse(request, service, call, OBJECTS.name, params, call.image())
    best = shapes.scene(result["objects"])
    label, confidence = best if best is not None else ("unknown", 0.0)
    return shapes.success_response({"label": label, "confidence": confidence, **timings})


@router.post(f"{PREFIX}/ocr")
@router.post("/v1/image/ocr")
async def ocr(request: Request, service: Service, call: DeepStackCall) -> JSONResponse:
    if call.upload.file is None:
        raise ApiError(ErrorKind.NO_DATA)
    result, timings = await _analyse(request, service, call, DETECT_TEXT.name, {}, call.upload.file)
    lines = shapes.text_lines(result["objects"])
    return _predictions(lines, timings, shapes.count_found(lines, "line", "No text found"))


_ROUTES = frozenset(
    path for route in router.routes if (path := getattr(route, "path", "")) and "{" not in path
)


@router.api_route(
    "/v1/vision/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
@router.api_route(
    "/v1/image/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def not_found(request: Request) -> JSONResponse:
    """Unknown paths and methods under DeepStack's prefixes answer in its envelope, too (the
    rest of /v1/ is Google's: server/http/google/)."""
    path = request.url.path
    if path in _ROUTES or path.startswith(f"{PREFIX}/custom/"):
        return shapes.failure(405, "Method Not Allowed", {"Allow": "POST"})
    return shapes.failure(404, "Not Found")
