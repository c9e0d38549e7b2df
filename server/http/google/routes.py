"""Google Cloud Vision's REST API (docs/compat.md):

POST /v1/images:annotate, /v1p1beta1/images:annotate     BatchAnnotateImages: 1 unit per image
any other path under /v1/ and /v1p1beta1/                404 NOT_FOUND, or 501 UNIMPLEMENTED
                                                          for Google's other methods

The key comes in the ``x-goog-api-key`` header (the clients' ``api_key``) or as ``?key=``
(curl), or a registered service account's self-signed token as ``authorization: Bearer``
(service_accounts.py); without a valid one, 403 PERMISSION_DENIED. Every error, 404s too,
is answered in Google's shape by the route class below, once for the dialect.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from server.errors import ApiError, ErrorKind
from server.http.disconnect import until_disconnected
from server.http.google.annotate import batch_annotate
from server.http.google.errors import (
    GoogleError,
    error_response,
    from_api_error,
    not_found,
    not_implemented,
)
from server.http.google.service_accounts import registered
from server.http.respond import NO_SNIFF_NO_STORE, answered_error, dialect_route, request_id
from server.http.state import Service, State
from server.http.upload import whole_body
from server.service.application import ApplicationService, KeyRecord

API_KEY_HEADER = "x-goog-api-key"
API_KEY_QUERY = "key"
VERSIONS = ("v1", "v1p1beta1")
# Google's other methods of the API: not served here.
UNSERVED_METHODS = ("files:annotate", "files:asyncBatchAnnotate", "images:asyncBatchAnnotate")


def _error(request: Request, exc: Exception) -> Response:
    """Every error of the dialect's routes in Google's shape; a 500 tells the client nothing
    (the log has it under the request id)."""
    if isinstance(exc, GoogleError):
        return error_response(exc)
    return error_response(from_api_error(answered_error(request, exc)))


router = APIRouter(route_class=dialect_route(_error), include_in_schema=False)


async def authenticate(
    service: ApplicationService, secret: str | None, authorization: str | None = None
) -> KeyRecord:
    """Our key from Google's places for it: an API key, else a registered service account's
    token (charged to the key the operator named for it); 403 without either (errors.py)."""
    scheme, _, token = (authorization or "").partition(" ")
    if not (secret and secret.strip()) and scheme.lower() == "bearer" and token.strip():
        accounts = registered(service.settings.google_service_accounts)
        name = accounts.key_name(token.strip()) if accounts is not None else None
        key = await service.key_named(name) if name is not None else None
        if key is None:
            raise ApiError(ErrorKind.APIKEY_INVALID)
        return key
    return await service.authenticate(secret)


async def api_key(request: Request, service: Service) -> KeyRecord:
    sent = request.headers.get(API_KEY_HEADER) or request.query_params.get(API_KEY_QUERY)
    return await authenticate(service, sent, request.headers.get("authorization"))


async def _json_body(request: Request, limit: int) -> Any:
    body = await whole_body(
        request,
        limit,
        lambda: GoogleError(
            "INVALID_ARGUMENT", f"Request payload size exceeds the limit: {limit} bytes."
        ),
    )
    try:
        return await run_in_threadpool(json.loads, body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise GoogleError(
            "INVALID_ARGUMENT", "Invalid JSON payload received: the body is not JSON."
        ) from None


async def images_annotate(
    request: Request, state: State, key: Annotated[KeyRecord, Depends(api_key)]
) -> JSONResponse:
    body = await _json_body(request, state.settings.google_max_request_bytes)
    answer = await until_disconnected(
        request, batch_annotate(state.service, key, body, state.settings, request_id(request))
    )
    return JSONResponse(answer, headers=NO_SNIFF_NO_STORE)


# Also with a parent (projects/P, projects/P/locations/L), which only chooses where Google
# computes.
for _version in VERSIONS:
    for _parent in ("", "projects/{project}/", "projects/{project}/locations/{location}/"):
        router.add_api_route(
            f"/{_version}/{_parent}images:annotate", images_annotate, methods=["POST"]
        )


async def other(request: Request, rest: str) -> JSONResponse:
    """Google's other methods answer 501, any other path 404, both in Google's shape."""
    method = rest.rsplit("/", 1)[-1]
    if method in UNSERVED_METHODS:
        raise not_implemented(method)
    raise not_found(request.url.path)


# Registered after DeepStack's /v1/vision/ and /v1/image/ routes (server/http/app.py), which
# this would otherwise hide.
for _version in VERSIONS:
    router.add_api_route(
        f"/{_version}/{{rest:path}}", other, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
    )
