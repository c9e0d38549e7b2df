"""What CompreFace's clients send: the key header, query parameters, and bodies (multipart
or JSON with base64 images), read into checked values or CompreFace's errors."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from server.errors import ApiError, ErrorKind
from server.http.compreface.errors import (
    BAD_FILE,
    INVALID_VALUE,
    MISSING_PART,
    CompreFaceError,
    missing_header,
)
from server.http.state import Service
from server.http.upload import (
    FORM_OVERHEAD_BYTES,
    MAX_FIELD_BYTES,
    UploadTooLargeError,
    read_upload,
    whole_body,
)
from server.service.application import KeyRecord
from server.settings import Settings

API_KEY_HEADER = "x-api-key"
FILE_PART = "file"
PLUGINS_SEPARATOR = re.compile(r"[,\s]+")


# --- keys ----------------------------------------------------------------------------------


def _sent_key(request: Request) -> str:
    key = request.headers.get(API_KEY_HEADER, "").strip()
    if not key:
        raise missing_header()
    return key


async def any_key(request: Request, service: Service) -> KeyRecord:
    """The request's key: CompreFace's recognition, detection and verification services each
    have their own; any of ours serves all three."""
    return await service.authenticate(_sent_key(request))


async def admin_key(request: Request, service: Service) -> KeyRecord:
    """The request's key, if it is an admin's: the gallery is the operator's."""
    return await service.authenticate(_sent_key(request), admin=True)


ApiKey = Annotated[KeyRecord, Depends(any_key)]
AdminKey = Annotated[KeyRecord, Depends(admin_key)]


def face_plugins(request: Request) -> set[str]:
    """The plugins asked for (``face_plugins=landmarks,calculator``); unknown ones are
    ignored, as the literal ``undefined`` that Double Take sends."""
    raw = request.query_params.get("face_plugins", "").lower()
    return {plugin for plugin in PLUGINS_SEPARATOR.split(raw) if plugin}


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


async def json_body(request: Request, limit: int, expected: type = dict) -> Any:
    body = await whole_body(request, limit, lambda: ApiError(ErrorKind.IMAGE_TOO_LARGE))
    try:
        parsed = await run_in_threadpool(json.loads, body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nested deeper than the parser goes (thousands of levels).
        raise CompreFaceError(400, INVALID_VALUE, "the body is not valid JSON") from None
    if not isinstance(parsed, expected):
        kind = "an object" if expected is dict else "an array"
        raise CompreFaceError(400, INVALID_VALUE, f"the body must be {kind}")
    return parsed


def _decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CompreFaceError(400, BAD_FILE, "Provided value is not Base64") from None


async def read_images(
    request: Request, settings: Settings, parts: tuple[str, ...]
) -> list[tuple[str, bytes]]:
    """The posted images named ``parts`` and their file names: multipart parts, or a JSON
    body's base64 strings under those names; within the upload size limit (413 beyond it),
    each part required (code 34)."""
    limit = settings.max_upload_bytes
    if _is_json(request):
        # Base64 is 4/3 of the bytes it encodes.
        body = await json_body(request, len(parts) * (limit * 4 // 3) + FORM_OVERHEAD_BYTES)
        images = []
        for part in parts:
            encoded = body.get(part)
            if not isinstance(encoded, str) or not encoded.strip():
                raise CompreFaceError(400, MISSING_PART, f"Required part {part} is missing")
            data = await run_in_threadpool(_decode_base64, encoded)
            if len(data) > limit:
                raise ApiError(ErrorKind.IMAGE_TOO_LARGE)
            images.append((part, data))  # a JSON body's image has no file name of its own
        return images
    try:
        upload = await read_upload(request, limit, file_fields=frozenset(parts))
    except UploadTooLargeError:
        raise ApiError(ErrorKind.IMAGE_TOO_LARGE) from None
    images = []
    for part in parts:
        data = upload.files_by_field.get(part)
        if data is None:
            raise CompreFaceError(400, MISSING_PART, f"Required part {part} is missing")
        name = next((name for name, content in upload.files if content is data), part)
        images.append((name, data))
    return images


async def read_image(request: Request, settings: Settings) -> tuple[str, bytes]:
    """The posted image (part ``file``, or JSON ``{"file": base64}``) and its file name."""
    (image,) = await read_images(request, settings, (FILE_PART,))
    return image


async def subject_body(request: Request) -> str:
    """The ``subject`` of a JSON body ``{"subject": name}``."""
    body = await json_body(request, MAX_FIELD_BYTES)
    subject = body.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        raise CompreFaceError(400, INVALID_VALUE, "Subject name is empty")
    return subject.strip()
