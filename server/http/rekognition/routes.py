"""Amazon Rekognition's API (AWS JSON 1.1): ``POST /`` with ``X-Amz-Target:
RekognitionService.<Operation>``, signed with Signature Version 4 by a key's AWS-style
credentials (``imagerecognize keys create --aws``). Each request: the body read (at most two
5 MiB images), the signature checked, the input read by operations.py, one service call,
the answer in Rekognition's output shape; every error in AWS's shape (errors.py), mapped
once here. ``POST /`` without X-Amz-Target is not this dialect's: it answers as before.
Every operation, field and difference from Amazon's: docs/compat.md.
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from server.errors import ApiError, ErrorKind, api_error
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
from server.http.respond import envelope, request_id
from server.http.state import get_state
from server.telemetry.requests import note_type

log = logging.getLogger(__name__)

router = APIRouter()


async def _answer(request: Request, operation: str) -> Response:
    state = get_state(request)
    rid = request_id(request)
    with state.trimmer.request():
        try:
            body = await read_body(request)
            signed = parse_authorization(request.scope["headers"])
            found = await state.service.aws.signing_key(signed.access_key_id)
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
            handler = operations.OPERATIONS.get(operation)
            if handler is None:
                raise AwsError(
                    UNKNOWN_OPERATION, f"Operation {operation[:100]!r} is not served here"
                )
            note_type(operations.TYPES.get(operation))
            call = operations.Call(request, state.service, key, signed.region)
            output = await handler(call, Members(parse_input(body)))
            return Response(
                json.dumps(output).encode(),
                media_type=JSON_CONTENT_TYPE,
                headers={"x-amzn-RequestId": rid, "Cache-Control": "no-store"},
            )
        except AwsError as exc:
            return error_response(exc, rid)
        except SignatureError as exc:
            status = 403 if exc.code == "MissingAuthenticationTokenException" else 400
            return error_response(AwsError(exc.code, exc.message, status), rid)
        except ClientDisconnect:
            log.info("request %s: client left during its upload", rid)
            return error_response(from_api_error(ApiError(ErrorKind.CLIENT_CLOSED)), rid)
        except Exception as exc:
            error = api_error(exc)
            if error is None:
                log.exception("request %s failed", rid)
                error = ApiError(ErrorKind.INTERNAL)
            return error_response(from_api_error(error), rid)


@router.post("/", include_in_schema=False)
async def rekognition(request: Request) -> Response:
    operation = operation_of(request)
    if operation is None:
        # Not an AWS request: `/` serves the page (GET) only, as it did before this dialect.
        return envelope(405, "Method Not Allowed", headers={"Allow": "GET"})
    return await _answer(request, operation)
