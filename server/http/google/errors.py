"""Our errors in Google's shapes, mapped once for the dialect: a call's error is an HTTP
status with ``{"error": {"code", "message", "status", "details"}}`` (the clients pick their
exception by the HTTP status); one image's error is ``responses[i].error``, a google.rpc.Status
(``{"code", "message"}`` with the rpc code), answered with HTTP 200 beside the other images'
answers. gRPC answers the same rpc codes."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from server.errors import ApiError, ErrorKind, api_error
from server.http.respond import NO_SNIFF_NO_STORE

# google.rpc.Code: name → (number, HTTP status).
CODES: dict[str, tuple[int, int]] = {
    "CANCELLED": (1, 499),
    "INVALID_ARGUMENT": (3, 400),
    "NOT_FOUND": (5, 404),
    "PERMISSION_DENIED": (7, 403),
    "RESOURCE_EXHAUSTED": (8, 429),
    "UNIMPLEMENTED": (12, 501),
    "INTERNAL": (13, 500),
    "UNAVAILABLE": (14, 503),
}
# Our error kinds in Google's codes. A bad or missing key is 403, never 401: the clients take
# 401 as "refresh the credentials and send again".
STATUS_OF: dict[ErrorKind, str] = {
    ErrorKind.NO_DATA: "INVALID_ARGUMENT",
    ErrorKind.APIKEY_MISSING: "PERMISSION_DENIED",
    ErrorKind.APIKEY_INVALID: "PERMISSION_DENIED",
    ErrorKind.APIKEY_NOT_ADMIN: "PERMISSION_DENIED",
    ErrorKind.QUOTA_REACHED: "RESOURCE_EXHAUSTED",
    ErrorKind.INVALID_FILE: "INVALID_ARGUMENT",
    ErrorKind.IMAGE_TOO_LARGE: "INVALID_ARGUMENT",
    ErrorKind.INVALID_FORMAT: "INVALID_ARGUMENT",
    ErrorKind.INVALID_TYPE: "INVALID_ARGUMENT",
    ErrorKind.INVALID_PARAMETER: "INVALID_ARGUMENT",
    ErrorKind.FORBIDDEN: "PERMISSION_DENIED",
    ErrorKind.UNAVAILABLE: "UNAVAILABLE",
    ErrorKind.CLIENT_CLOSED: "CANCELLED",
    ErrorKind.INTERNAL: "INTERNAL",
}
MESSAGES: dict[ErrorKind, str] = {
    ErrorKind.NO_DATA: "No image content or source given.",
    ErrorKind.APIKEY_MISSING: "The request is missing a valid API key.",
    ErrorKind.APIKEY_INVALID: "API key not valid. Please pass a valid API key.",
    ErrorKind.QUOTA_REACHED: "Quota exceeded: this API key has no quota left.",
    ErrorKind.INVALID_FILE: "Bad image data.",
    ErrorKind.INVALID_FORMAT: "Bad image data: only PNG and JPEG images are read.",
    ErrorKind.INTERNAL: "Internal error.",
}
CALL_STATUSES = frozenset({"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "CANCELLED"})
API_KEY_INVALID = "API_KEY_INVALID"
KEY_ERRORS = frozenset({ErrorKind.APIKEY_MISSING, ErrorKind.APIKEY_INVALID})
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
DOMAIN = "googleapis.com"


class GoogleError(Exception):
    """An error answered in Google's shape: ``status`` one of CODES."""

    def __init__(
        self,
        status: str,
        message: str,
        *,
        reason: str | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.retry_after = retry_after

    @property
    def code(self) -> int:
        """The google.rpc code."""
        return CODES[self.status][0]

    @property
    def http_status(self) -> int:
        return CODES[self.status][1]

    @property
    def is_call_error(self) -> bool:
        """Whether it fails the whole call rather than one image: the key, the quota, an
        overloaded server (the clients retry a 503 by themselves), a client gone."""
        return self.status in CALL_STATUSES

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.http_status,
            "message": self.message,
            "status": self.status,
        }
        if self.reason:
            error["details"] = [
                {
                    "@type": ERROR_INFO_TYPE,
                    "reason": self.reason,
                    "domain": DOMAIN,
                    "metadata": {"service": "vision.googleapis.com"},
                }
            ]
        return {"error": error}

    def image_error(self) -> dict[str, Any]:
        """As one image's answer: ``{"error": google.rpc.Status}``."""
        return {"error": {"code": self.code, "message": self.message}}


def from_api_error(error: ApiError) -> GoogleError:
    message = MESSAGES.get(error.kind)
    if message is None:
        message = error.status_message
    elif error.detail and error.kind not in KEY_ERRORS:
        message = f"{message} {error.detail}"
    return GoogleError(
        STATUS_OF[error.kind],
        message,
        reason=API_KEY_INVALID if error.kind in KEY_ERRORS else None,
        retry_after=error.retry_after,
    )


def google_error(exc: Exception) -> GoogleError | None:
    """Google's answer to an error raised below; None: an internal error (logged by the
    caller, never shown)."""
    if isinstance(exc, GoogleError):
        return exc
    error = api_error(exc)
    return None if error is None else from_api_error(error)


def error_response(error: GoogleError) -> JSONResponse:
    headers = dict(NO_SNIFF_NO_STORE)
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(error.body(), status_code=error.http_status, headers=headers)


def not_found(path: str) -> GoogleError:
    return GoogleError("NOT_FOUND", f"The requested URL {path[:200]} was not found on this server.")


def not_implemented(method: str) -> GoogleError:
    return GoogleError(
        "UNIMPLEMENTED",
        f"{method} is not served here: this server answers images:annotate only.",
    )
