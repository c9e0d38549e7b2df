"""Rekognition's errors: the one table from this server's error kinds to AWS's error codes and
statuses, and AWS's error body (``{"__type": code, "message": text}`` with the
``x-amzn-ErrorType`` and ``x-amzn-RequestId`` headers).

boto3 reads the code from the body's ``__type`` and raises ``client.exceptions.<Code>`` for
the codes in Rekognition's service model; it retries ``ThrottlingException`` (a full queue) and
``InternalServerError`` by itself. Codes outside the model (the signature's) reach the caller
as a ``ClientError`` with ``Error.Code`` set. docs/compat.md lists every case.
"""

from __future__ import annotations

import json

from starlette.responses import Response

from server.errors import ApiError, ErrorKind

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"

THROTTLING = "ThrottlingException"
INTERNAL = "InternalServerError"
INVALID_PARAMETER = "InvalidParameterException"
INVALID_IMAGE_FORMAT = "InvalidImageFormatException"
IMAGE_TOO_LARGE = "ImageTooLargeException"
ACCESS_DENIED = "AccessDeniedException"
RESOURCE_NOT_FOUND = "ResourceNotFoundException"
RESOURCE_EXISTS = "ResourceAlreadyExistsException"
INVALID_S3_OBJECT = "InvalidS3ObjectException"
INVALID_PAGINATION_TOKEN = "InvalidPaginationTokenException"
QUOTA_EXCEEDED = "ServiceQuotaExceededException"
SERIALIZATION = "SerializationException"
UNKNOWN_OPERATION = "UnknownOperationException"

# This server's error kinds as Rekognition's (code, HTTP status). The codes come from the
# service model, so that boto3 raises typed exceptions; an exhausted quota is
# ServiceQuotaExceededException, which boto3 does not retry (LimitExceededException and
# ProvisionedThroughputExceededException it would retry, in vain).
ERROR_CODES: dict[ErrorKind, tuple[str, int]] = {
    ErrorKind.NO_DATA: (INVALID_PARAMETER, 400),
    ErrorKind.APIKEY_MISSING: ("MissingAuthenticationTokenException", 403),
    ErrorKind.APIKEY_INVALID: ("UnrecognizedClientException", 400),
    ErrorKind.APIKEY_NOT_ADMIN: (ACCESS_DENIED, 400),
    ErrorKind.QUOTA_REACHED: (QUOTA_EXCEEDED, 400),
    ErrorKind.INVALID_FILE: (INVALID_IMAGE_FORMAT, 400),
    ErrorKind.IMAGE_TOO_LARGE: (IMAGE_TOO_LARGE, 400),
    ErrorKind.INVALID_FORMAT: (INVALID_IMAGE_FORMAT, 400),
    ErrorKind.INVALID_TYPE: (INVALID_PARAMETER, 400),
    ErrorKind.INVALID_PARAMETER: (INVALID_PARAMETER, 400),
    ErrorKind.FORBIDDEN: (ACCESS_DENIED, 403),
    # A model that cannot run (a full queue is ThrottlingException: aws_error below).
    ErrorKind.UNAVAILABLE: (INTERNAL, 500),
    ErrorKind.CLIENT_CLOSED: (INTERNAL, 499),  # never delivered: the client has left
    ErrorKind.INTERNAL: (INTERNAL, 500),
}
# Messages as AWS words them where ours would name this server's own fields.
MESSAGES: dict[ErrorKind, str] = {
    ErrorKind.APIKEY_INVALID: "The security token included in the request is invalid.",
    ErrorKind.APIKEY_NOT_ADMIN: "Collections and faces need the credentials of an admin key",
    ErrorKind.QUOTA_REACHED: "The quota of analyses of this key is used up",
    ErrorKind.IMAGE_TOO_LARGE: "Image size is too large.",
    ErrorKind.INVALID_FORMAT: "Request has unsupported image format",
    ErrorKind.INVALID_FILE: "Request has invalid image format",
    ErrorKind.INTERNAL: "Internal server error",
}


class AwsError(Exception):
    """An error answered in Rekognition's terms."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def invalid_parameter(message: str) -> AwsError:
    return AwsError(INVALID_PARAMETER, message)


def from_api_error(error: ApiError) -> AwsError:
    """An error of the service (server/errors.py) in Rekognition's terms."""
    if error.kind is ErrorKind.UNAVAILABLE and error.retry_after is not None:
        # A full queue or a request that waited too long: boto3 backs off and retries.
        return AwsError(THROTTLING, "Rate exceeded: " + (error.detail or "server busy"), 400)
    code, status = ERROR_CODES[error.kind]
    message = MESSAGES.get(error.kind)
    if message is None:
        message = error.status_message
    elif error.detail and error.kind is not ErrorKind.APIKEY_INVALID:
        message = f"{message}: {error.detail}"
    return AwsError(code, message, status)


def error_response(error: AwsError, request_id: str) -> Response:
    body = json.dumps({"__type": error.code, "message": error.message}).encode()
    return Response(
        body,
        status_code=error.status,
        media_type=JSON_CONTENT_TYPE,
        headers={
            "x-amzn-ErrorType": error.code,
            "x-amzn-RequestId": request_id,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
