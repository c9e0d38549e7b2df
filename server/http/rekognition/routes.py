"""Amazon Rekognition's API (AWS JSON 1.1): ``POST /`` with ``X-Amz-Target:
RekognitionService.<Operation>``, signed with Signature Version 4 by a key's AWS-style
credentials (``imagerecognize keys create --aws``). A request: its body read (at most two
5 MiB images), its signature checked and its key found (``read_call``), then its operation
(operations.py: input members → service call → output shape). Every error is written in
AWS's shape by the router's route class (errors.py holds the one table). ``POST /`` without
X-Amz-Target is not this dialect's: it answers 405, as it did before.
Every operation, field and difference from Amazon's: docs/compat.md.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from server.errors import ApiError, ErrorKind
from server.http.disconnect import until_disconnected
from server.http.rekognition import operations
from server.http.rekognition.errors import (
    JSON_CONTENT_TYPE,
    UNKNOWN_OPERATION,
    AwsError,
    error_response,
    from_api_error,
)
from server.http.rekognition.signature import SignatureError, check_signature, parse_authorization
from server.http.rekognition.wire import Members, operation_of, parse_input, read_body
from server.http.respond import answered_error, dialect_route, request_id
from server.http.state import Service
from server.telemetry.requests import note_type


def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, SignatureError):
        status = 403 if exc.code == "MissingAuthenticationTokenException" else 400
        exc = AwsError(exc.code, exc.message, status)
    if not isinstance(exc, AwsError):
        exc = from_api_error(answered_error(request, exc))
    return error_response(exc, request_id(request))


router = APIRouter(route_class=dialect_route(_error))


async def read_call(request: Request, service: Service) -> operations.Call:
    """The operation, the body (read whole: the signature covers it), the key whose
    credentials signed it, and the input; AWS's errors for each way that fails."""
    operation = operation_of(request)
    if operation is None:
        # Not an AWS request: `/` serves the page (GET) only, as before this dialect.
        raise StarletteHTTPException(405, headers={"Allow": "GET"})
    body = await read_body(request)
    signed = parse_authorization(request.scope["headers"])
    found = await service.aws.signing_key(signed.access_key_id)
    if found is None:
        raise ApiError(ErrorKind.APIKEY_INVALID)
    key, secret = found
    check_signature(
        signed,
        secret,
        method=request.method,
        raw_path=request.scope.get("raw_path") or request.scope["path"].encode(),
        query_string=request.scope.get("query_string", b""),
        headers=request.scope["headers"],
        body=body,
    )
    if operation not in operations.OPERATIONS:
        raise AwsError(UNKNOWN_OPERATION, f"Operation {operation[:100]!r} is not served here")
    note_type(operations.TYPES[operation])  # for the access log and metrics
    # Off the event loop: a body of two images is about 14 MB of JSON.
    document = await run_in_threadpool(parse_input, body)
    return operations.Call(operation, service, key, signed.region, Members(document))


RekognitionCall = Annotated[operations.Call, Depends(read_call)]


@router.post("/", include_in_schema=False)
async def rekognition(request: Request, call: RekognitionCall) -> Response:
    output = await until_disconnected(request, operations.OPERATIONS[call.operation](call))
    return Response(
        json.dumps(output).encode(),
        media_type=JSON_CONTENT_TYPE,
        headers={"x-amzn-RequestId": request_id(request), "Cache-Control": "no-store"},
    )
