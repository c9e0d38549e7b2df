"""The API's typed errors and the one table that maps them to status codes and messages."""

from __future__ import annotations

from enum import Enum

from models.images import ImageError, ImageErrorKind


class ErrorKind(Enum):
    """Every failure a client can see. Value: (status, status_message)."""

    NO_DATA = (300, "Invalid request, no data received")
    APIKEY_MISSING = (400, "APIkey missing")
    APIKEY_INVALID = (401, "APIkey invalid")
    APIKEY_NOT_ADMIN = (401, "APIkey not allowed: the gallery needs an admin key")
    QUOTA_REACHED = (402, "Quota limit reached")
    INVALID_FILE = (412, "Invalid file")
    IMAGE_TOO_LARGE = (413, "Image size too large")
    INVALID_FORMAT = (415, "Invalid file format")
    INVALID_TYPE = (420, "Invalid type")
    INVALID_PARAMETER = (421, "Invalid parameter")
    FORBIDDEN = (403, "Forbidden")  # a browser page from an origin CORS does not allow
    UNAVAILABLE = (503, "Service unavailable")
    # Never delivered (nginx's code): it names, in the access log, a request whose client
    # left before its answer; the analysis was dropped and its quota refunded.
    CLIENT_CLOSED = (499, "Client closed request")
    INTERNAL = (500, "Internal error")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]


class ApiError(Exception):
    """An error that belongs to one request and is answered with its own status code.

    ``detail`` is appended to the status message ("Invalid parameter: max_labels ...");
    it must be safe to show to the client. ``retry_after`` (seconds) adds a Retry-After header.
    """

    def __init__(self, kind: ErrorKind, detail: str | None = None, retry_after: int | None = None):
        super().__init__(kind.name if detail is None else f"{kind.name}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return self.kind.status

    @property
    def status_message(self) -> str:
        if self.detail:
            return f"{self.kind.message}: {self.detail}"
        return self.kind.message


class ModelUnavailableError(ApiError):
    """The model of a type cannot run: not built into this server, failed to load, overloaded."""

    def __init__(self, detail: str, retry_after: int | None = None):
        super().__init__(ErrorKind.UNAVAILABLE, detail, retry_after)


class InputError(Exception):
    """Input that a layer below HTTP refuses (a gallery name, a person's photo count); its
    message is safe to show and is answered 421 with it."""


# What a client is told of an image the image module refused.
IMAGE_ERRORS = {
    ImageErrorKind.INVALID_FILE: ErrorKind.INVALID_FILE,
    ImageErrorKind.TOO_LARGE: ErrorKind.IMAGE_TOO_LARGE,
    ImageErrorKind.UNSUPPORTED_FORMAT: ErrorKind.INVALID_FORMAT,
}


def api_error(exc: Exception) -> ApiError | None:
    """The API's answer to an error raised below the HTTP layer; None: an internal error."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ImageError):
        return ApiError(IMAGE_ERRORS[exc.kind])
    if isinstance(exc, InputError):
        return ApiError(ErrorKind.INVALID_PARAMETER, str(exc))
    return None
