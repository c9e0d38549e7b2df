"""The DeepStack / CodeProject.AI routes (multipart form, file ``image``, field ``api_key``):

POST /v1/vision/detection, /v1/vision/custom/<model>    objects, boxes only
POST /v1/vision/custom/list                              the objects model's name
POST /v1/vision/face, /v1/vision/face/                   detect_faces
POST /v1/vision/face/recognize                           celebrities against the gallery
POST /v1/vision/face/register, /face/list, /face/delete  the gallery
POST /v1/vision/face/match                               two faces' similarity
POST /v1/vision/scene                                    the ImageNet classifier's best label
POST /v1/vision/ocr, /v1/image/ocr                       detect_text

Analyses are admitted by the same checks as /api/v2/ after the key (server/service/
admission.py) and charged one unit each; the answers are translated in shapes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from models.types import MAX_INT
from server.errors import ApiError, ErrorKind, api_error
from server.http.deepstack import shapes
from server.http.disconnect import until_disconnected
from server.http.observability import GALLERY_TYPE
from server.http.respond import request_id
from server.http.state import AppState, State
from server.http.upload import UploadTooLargeError, read_upload
from server.service.admission import admit_image
from server.service.form import Upload
from server.service.gallery import FACES_TYPE, enrol_in_gallery, face_similarity
from server.store.audit import api_actor
from server.store.gallery import GalleryError
from server.store.keys import KeyRecord
from server.telemetry.requests import note_answer, note_type

log = logging.getLogger(__name__)

router = APIRouter()

PREFIX = "/v1/vision"


async def _answer(request: Request, work: Callable[[], Awaitable[dict[str, Any]]]) -> JSONResponse:
    """``work()``'s body as DeepStack's success, or its error in DeepStack's envelope; a 500
    carries no exception text (the log has it under the request id)."""
    with request.app.state.imagerecognize.trimmer.request():
        try:
            return shapes.success_response(await work())
        except ClientDisconnect:
            log.info("request %s: client left during its upload", request_id(request))
            return shapes.error_response(ApiError(ErrorKind.CLIENT_CLOSED))
        except Exception as exc:
            error = api_error(exc)
            if error is None:
                log.exception("request %s failed", request_id(request))
                error = ApiError(ErrorKind.INTERNAL)
            return shapes.error_response(error)


async def _form(request: Request, state: AppState) -> Upload:
    """The form's fields and files (under any field name), within the size limit (413)."""
    try:
        return await read_upload(
            request,
            state.settings.max_upload_bytes,
            file_fields=frozenset({shapes.IMAGE_FIELD}),
            any_filename=True,
        )
    except UploadTooLargeError:
        raise ApiError(ErrorKind.IMAGE_TOO_LARGE) from None


async def _caller(state: AppState, upload: Upload) -> tuple[KeyRecord, bool]:
    """The key the call is charged to, and whether it came without one (then it is the
    DEEPSTACK_ANONYMOUS_KEY's); 401 for an unknown key, or none without that setting."""
    sent = upload.fields.get(shapes.API_KEY_FIELD, "").strip()
    if sent:
        key = await run_in_threadpool(state.keys.authenticate, sent)
        if key is None:
            raise ApiError(ErrorKind.APIKEY_INVALID)
        return key, False
    name = state.settings.deepstack_anonymous_key
    if not name:
        raise ApiError(ErrorKind.APIKEY_MISSING)
    key = await run_in_threadpool(state.keys.find, name)
    if key is None or key.revoked:
        log.warning("IMAGERECOGNIZE_DEEPSTACK_ANONYMOUS_KEY names no active key: %r", name)
        raise ApiError(ErrorKind.APIKEY_MISSING)
    return key, True


async def _gallery_caller(state: AppState, upload: Upload) -> str:
    """An admin key, or no key where DEEPSTACK_ANONYMOUS_GALLERY allows it (else 401): who
    that is, for the audit log."""
    note_type(GALLERY_TYPE)  # for the access log and metrics
    key, anonymous = await _caller(state, upload)
    if not (key.is_admin or (anonymous and state.settings.deepstack_anonymous_gallery)):
        raise ApiError(ErrorKind.APIKEY_NOT_ADMIN)
    return api_actor(key.name)


def _image(upload: Upload) -> bytes:
    """The ``image`` file, else the first file of any name; 400 without one."""
    data = upload.files_by_field.get(shapes.IMAGE_FIELD, upload.file)
    if data is None:
        raise ApiError(ErrorKind.NO_DATA)
    return data


async def _analyse(
    request: Request,
    state: AppState,
    key: KeyRecord,
    type_: str,
    params: dict[str, Any],
    data: bytes,
) -> tuple[dict[str, Any], dict[str, int]]:
    """One analysis through /api/v2/'s admission and service (one unit of quota): its
    ``data`` and CodeProject.AI's timings."""
    note_type(type_)
    started = time.perf_counter()
    admitted = await admit_image(
        state.keys, state.results, state.pipeline, key, type_, params, data
    )
    analysed = time.perf_counter()
    result = await until_disconnected(request, state.service.analyze(admitted))
    note_answer(result)
    done = time.perf_counter()
    timings = {
        "inferenceMs": round((done - analysed) * 1000.0),
        "processMs": round((done - started) * 1000.0),
    }
    return result, timings


def _predictions(
    predictions: list[dict[str, Any]], timings: dict[str, int], message: str
) -> dict[str, Any]:
    return {
        "predictions": predictions,
        "count": len(predictions),
        "message": message,
        **timings,
    }


async def _detection(request: Request, state: AppState) -> dict[str, Any]:
    upload = await _form(request, state)
    key, _ = await _caller(state, upload)
    min_confidence = shapes.parse_min_confidence(
        upload.fields.get(shapes.MIN_CONFIDENCE_FIELD), shapes.DETECTION_MIN_CONFIDENCE
    )
    params = {"max_labels": MAX_INT, "min_confidence": shapes.percent_floor(min_confidence)}
    result, timings = await _analyse(request, state, key, "objects", params, _image(upload))
    predictions = shapes.detections(result["objects"], min_confidence)
    message = shapes.names_found(predictions, "label", "No objects found")
    return _predictions(predictions, timings, message)


@router.post(f"{PREFIX}/detection")
async def detection(request: Request, state: State) -> JSONResponse:
    return await _answer(request, lambda: _detection(request, state))


def _objects_models(state: AppState) -> list[str]:
    """The names the objects model is served under (one: the model answering objects)."""
    try:
        return [state.pipeline.model_class("objects").name]
    except ApiError:  # no objects model on this server
        return []


@router.post(f"{PREFIX}/custom/list")
@router.get(f"{PREFIX}/custom/list", include_in_schema=False)  # one operation id per function
async def custom_list(request: Request, state: State) -> JSONResponse:
    # No key needed: it names models, costs nothing, and Blue Iris asks before configuring.
    async def work() -> dict[str, Any]:
        return {"models": _objects_models(state)}

    return await _answer(request, work)


@router.post(f"{PREFIX}/custom/{{model}}")
async def custom(request: Request, state: State, model: str) -> JSONResponse:
    served = _objects_models(state)
    if model not in served:
        # As DeepStack, where a custom model that is not installed has no route.
        named = ", ".join(served) or "none"
        return shapes.failure(404, f"no custom model {model[:100]!r}; served: {named}")
    return await _answer(request, lambda: _detection(request, state))


@router.post(f"{PREFIX}/face")
@router.post(f"{PREFIX}/face/")
async def face(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        upload = await _form(request, state)
        key, _ = await _caller(state, upload)
        min_confidence = shapes.parse_min_confidence(
            upload.fields.get(shapes.MIN_CONFIDENCE_FIELD), shapes.FACE_MIN_CONFIDENCE
        )
        result, timings = await _analyse(request, state, key, "detect_faces", {}, _image(upload))
        predictions = shapes.faces(result["objects"], min_confidence)
        message = shapes.count_found(predictions, "face", "No faces found")
        return _predictions(predictions, timings, message)

    return await _answer(request, work)


@router.post(f"{PREFIX}/face/recognize")
async def recognize(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        upload = await _form(request, state)
        key, _ = await _caller(state, upload)
        min_confidence = shapes.parse_min_confidence(
            upload.fields.get(shapes.MIN_CONFIDENCE_FIELD), shapes.RECOGNITION_MIN_CONFIDENCE
        )
        result, timings = await _analyse(request, state, key, FACES_TYPE, {}, _image(upload))
        predictions = shapes.recognitions(
            result["objects"], result.get("unrecognized", []), min_confidence
        )
        message = shapes.names_found(predictions, "userid", "No faces found")
        return _predictions(predictions, timings, message)

    return await _answer(request, work)


@router.post(f"{PREFIX}/face/register")
async def register(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        upload = await _form(request, state)
        actor = await _gallery_caller(state, upload)
        userid = upload.fields.get(shapes.USERID_FIELD, "").strip()
        if not userid:
            raise ApiError(ErrorKind.INVALID_PARAMETER, "userid not specified")
        photos = upload.files
        if not photos:
            raise ApiError(ErrorKind.NO_DATA)
        # Added to the person's faces: DeepStack overwrote them (docs/compat.md).
        await enrol_in_gallery(state.pipeline, state.gallery, userid, photos, actor=actor)
        return {"message": "face added"}

    return await _answer(request, work)


@router.post(f"{PREFIX}/face/list")
async def face_list(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        upload = await _form(request, state)
        await _gallery_caller(state, upload)
        people = await run_in_threadpool(state.gallery.people)
        return {"faces": [person["name"] for person in people]}

    return await _answer(request, work)


@router.post(f"{PREFIX}/face/delete")
async def face_delete(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        upload = await _form(request, state)
        actor = await _gallery_caller(state, upload)
        userid = upload.fields.get(shapes.USERID_FIELD, "").strip()
        if not userid:
            raise ApiError(ErrorKind.INVALID_PARAMETER, "userid not specified")
        # DeepStack answers success for a user it does not know, too.
        with contextlib.suppress(GalleryError):
            await run_in_threadpool(
                functools.partial(state.gallery.remove_person, userid, actor=actor)
            )
        return {}

    return await _answer(request, work)


@router.post(f"{PREFIX}/face/match")
async def face_match(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        upload = await _form(request, state)
        key, _ = await _caller(state, upload)
        if len(upload.files) < 2:
            raise ApiError(ErrorKind.INVALID_PARAMETER, "face/match needs two image files")
        note_type(FACES_TYPE)
        (_, first), (_, second) = upload.files[:2]
        # One unit for the pair, kept only when the comparison is answered (no result is
        # stored, as for a stored result answered again: KeyStore.settle).
        reservation = await run_in_threadpool(state.keys.reserve, key)
        try:
            similarity = await until_disconnected(
                request, face_similarity(state.pipeline, first, second)
            )
            if similarity is None:
                raise ApiError(ErrorKind.INVALID_PARAMETER, "no face detected")
        except BaseException:
            await asyncio.shield(run_in_threadpool(state.keys.refund, reservation))
            raise
        await run_in_threadpool(state.keys.settle, reservation)
        return {"similarity": shapes.ratio(similarity)}

    return await _answer(request, work)


@router.post(f"{PREFIX}/scene")
async def scene(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        upload = await _form(request, state)
        key, _ = await _caller(state, upload)
        params = {"max_labels": MAX_INT, "min_confidence": 0}
        result, timings = await _analyse(request, state, key, "objects", params, _image(upload))
        best = shapes.scene(result["objects"])
        label, confidence = best if best is not None else ("unknown", 0.0)
        return {"label": label, "confidence": confidence, **timings}

    return await _answer(request, work)


@router.post(f"{PREFIX}/ocr")
@router.post("/v1/image/ocr")
async def ocr(request: Request, state: State) -> JSONResponse:
    async def work() -> dict[str, Any]:
        upload = await _form(request, state)
        key, _ = await _caller(state, upload)
        if upload.file is None:
            raise ApiError(ErrorKind.NO_DATA)
        result, timings = await _analyse(request, state, key, "detect_text", {}, upload.file)
        lines = shapes.text_lines(result["objects"])
        return _predictions(lines, timings, shapes.count_found(lines, "line", "No text found"))

    return await _answer(request, work)


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
