"""CompreFace's error body ``{"message", "code"}`` and its codes, and what our own errors
(server/errors.py, the gallery's) become in its terms."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse

from server.errors import ErrorKind
from server.http.respond import NO_SNIFF_NO_STORE, answered_error
from server.service.application import (
    FaceNotFoundError,
    GalleryError,
    ManyFacesError,
    NoFaceError,
    PersonExistsError,
    PersonNotFoundError,
    UnreadablePhotoError,
)

log = logging.getLogger(__name__)

# CompreFace's codes (its CommonExceptionCode); 0 is its "undefined".
UNDEFINED = 0
API_KEY_NOT_FOUND = 10  # its MODEL_NOT_FOUND: no service has that key
MISSING_HEADER = 20
BAD_FILE = 21  # its UNAVAILABLE_FILE_EXTENSION, also for base64 that is not
INVALID_VALUE = 26  # its VALIDATION_CONSTRAINT_VIOLATION
NO_FACE = 28
TOO_MANY_FACES = 31
WRITING_NOT_ALLOWED = 32
MISSING_PARAMETER = 33
MISSING_PART = 34
FACES_SERVICE = 41
SUBJECT_NOT_FOUND = 42
SUBJECT_EXISTS = 43
IMAGE_NOT_FOUND = 11  # "Image <id> not found"

NO_FACE_MESSAGE = "No face is found in the given image"


class CompreFaceError(Exception):
    """An answer in CompreFace's terms: HTTP status, code, message (safe to show)."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def missing_header() -> CompreFaceError:
    return CompreFaceError(400, MISSING_HEADER, "Missing header: x-api-key")


def subject_not_found(name: str) -> CompreFaceError:
    return CompreFaceError(404, SUBJECT_NOT_FOUND, f"Subject {name} not found")


# Our errors that CompreFace has a code for keep our HTTP status where it has none.
_API_ERRORS: dict[ErrorKind, tuple[int, int]] = {
    ErrorKind.APIKEY_MISSING: (400, MISSING_HEADER),
    ErrorKind.APIKEY_INVALID: (401, API_KEY_NOT_FOUND),
    ErrorKind.APIKEY_NOT_ADMIN: (403, WRITING_NOT_ALLOWED),
    ErrorKind.QUOTA_REACHED: (402, UNDEFINED),
    ErrorKind.INVALID_FILE: (400, BAD_FILE),
    ErrorKind.INVALID_FORMAT: (400, BAD_FILE),
    ErrorKind.IMAGE_TOO_LARGE: (413, UNDEFINED),
    ErrorKind.INVALID_PARAMETER: (400, INVALID_VALUE),
    ErrorKind.UNAVAILABLE: (503, FACES_SERVICE),
    ErrorKind.CLIENT_CLOSED: (499, UNDEFINED),
}


def compreface_error(request: Request, exc: Exception) -> CompreFaceError:
    """The answer to an error raised while serving a request, in CompreFace's terms."""
    if isinstance(exc, CompreFaceError):
        return exc
    if isinstance(exc, NoFaceError):
        return CompreFaceError(400, NO_FACE, NO_FACE_MESSAGE)
    if isinstance(exc, ManyFacesError):
        return CompreFaceError(400, TOO_MANY_FACES, "More than one face in the source image")
    if isinstance(exc, PersonNotFoundError):
        return CompreFaceError(404, SUBJECT_NOT_FOUND, str(exc))
    if isinstance(exc, PersonExistsError):
        return CompreFaceError(400, SUBJECT_EXISTS, "Subject already exists")
    if isinstance(exc, FaceNotFoundError):
        return CompreFaceError(404, IMAGE_NOT_FOUND, str(exc))
    if isinstance(exc, UnreadablePhotoError):
        return CompreFaceError(400, BAD_FILE, str(exc))
    if isinstance(exc, GalleryError):
        return CompreFaceError(400, INVALID_VALUE, str(exc))
    error = answered_error(request, exc)  # a 500 carries no exception text
    if error.kind is ErrorKind.APIKEY_MISSING:
        return missing_header()
    status, code = _API_ERRORS.get(error.kind, (error.status, UNDEFINED))
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return CompreFaceError(status, code, error.status_message, headers)


def compreface_response(error: CompreFaceError) -> JSONResponse:
    return JSONResponse(
        {"message": error.message, "code": error.code},
        status_code=error.status,
        headers={**NO_SNIFF_NO_STORE, **(error.headers or {})},
    )


def error_body(request: Request, exc: Exception) -> JSONResponse:
    """``exc`` as CompreFace's error body."""
    return compreface_response(compreface_error(request, exc))
