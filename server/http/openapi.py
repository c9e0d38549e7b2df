"""The OpenAPI description of the API, written out by hand where FastAPI cannot see it.

The /api/v2/, results and gallery handlers read their form themselves (streamed, with a size
limit), so FastAPI knows neither their fields nor their answers; GET and POST of one handler
would also share one operation id. Those paths are described here: their fields, and every status
code with its body and message, taken from the one table in server/errors.py.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.catalog import ALL_TYPES, API_TYPES, CACHE_TYPE, TYPES
from server.errors import ErrorKind

DESCRIBED_HERE = "/api/v2"
ENVELOPE_REF = {"$ref": "#/components/schemas/Envelope"}

ENVELOPE_SCHEMA = {
    "type": "object",
    "required": ["status", "status_message", "data"],
    "properties": {
        "status": {"type": "integer", "description": "Equal to the HTTP status."},
        "status_message": {"type": "string"},
        "data": {"description": "The result on success, null otherwise.", "nullable": True},
    },
}

# What each status means for a client of /api/v2/.
ANALYSIS_STATUSES: list[tuple[ErrorKind, str, str | None]] = [
    (ErrorKind.NO_DATA, "No fields at all, or the URL lacks the trailing slash.", None),
    (ErrorKind.APIKEY_MISSING, "No apikey field, or an empty one.", None),
    (ErrorKind.APIKEY_INVALID, "Unknown or revoked key.", None),
    (ErrorKind.QUOTA_REACHED, "The key has no quota left (checked before any model runs).", None),
    (ErrorKind.FORBIDDEN, "A browser page from an origin not in CORS_ALLOW_ORIGINS.",
     "origin https://other.example is not allowed"),
    (ErrorKind.INVALID_FILE, "PNG or JPEG that does not decode (truncated, corrupt, empty).", None),
    (ErrorKind.IMAGE_TOO_LARGE, "File over MAX_UPLOAD_BYTES, or more pixels than allowed.", None),
    (ErrorKind.INVALID_FORMAT, "Not PNG or JPEG.", None),
    (ErrorKind.INVALID_TYPE, "type is not one of the types (or GET with a type other than "
     "cache).", None),
    (ErrorKind.INVALID_PARAMETER, "Names every missing or malformed field of the type.",
     "file (missing), max_labels (missing, must be an integer >= 1)"),
    (ErrorKind.UNAVAILABLE, "The type's model is absent, failed to load, or is overloaded "
     "(Retry-After).", "objects is busy, retry shortly"),
    (ErrorKind.INTERNAL, "Unexpected failure; the X-Request-Id header names the log entry.", None),
]

GALLERY_STATUSES: list[tuple[ErrorKind, str, str | None]] = [
    (ErrorKind.APIKEY_MISSING, "No apikey field, or an empty one.", None),
    (ErrorKind.APIKEY_INVALID, "Unknown or revoked key (a valid key that is not an admin "
     "key gets `APIkey not allowed: the gallery needs an admin key`).", None),
    (ErrorKind.FORBIDDEN, "A browser page from an origin not in CORS_ALLOW_ORIGINS.",
     "origin https://other.example is not allowed"),
    (ErrorKind.IMAGE_TOO_LARGE, "Photos over MAX_UPLOAD_BYTES.", None),
    (ErrorKind.INVALID_PARAMETER, "Missing name or file; a photo with no face, several faces, "
     "or not PNG/JPEG; an unknown person or face.", "name (missing)"),
    (ErrorKind.UNAVAILABLE, "The face model is absent or failed to load.", None),
    (ErrorKind.INTERNAL, "Unexpected failure; the X-Request-Id header names the log entry.", None),
]

RESULT_STATUSES: list[tuple[ErrorKind, str, str | None]] = [
    (ErrorKind.APIKEY_MISSING, "No apikey field, or an empty one.", None),
    (ErrorKind.APIKEY_INVALID, "Unknown or revoked key.", None),
    (ErrorKind.FORBIDDEN, "A browser page from an origin not in CORS_ALLOW_ORIGINS.",
     "origin https://other.example is not allowed"),
    (ErrorKind.INVALID_PARAMETER, "This key has no stored result by that id (another key's "
     "result is answered the same).", "id (no such result for this key)"),
    (ErrorKind.INTERNAL, "Unexpected failure; the X-Request-Id header names the log entry.", None),
]

SUCCESS_EXAMPLE = {
    "status": 200,
    "status_message": "OK",
    "data": {
        "error": 0,
        "type": "detect_faces",
        "objects": [
            {
                "confidence": 99.98,
                "box": {"left": 164, "top": 46, "width": 84, "height": 111},
                "landmarks": {
                    "left_eye": {"x": 186, "y": 92}, "right_eye": {"x": 227, "y": 92},
                    "nose": {"x": 206, "y": 115}, "mouth_left": {"x": 190, "y": 134},
                    "mouth_right": {"x": 222, "y": 134},
                },
            }
        ],
        "quota": 99,
        "id": "3f0c…",
        "image": {"width": 512, "height": 512, "format": "jpeg", "sha256": "…"},
        "model": {"name": "mtcnn", "version": "facenet-pytorch 2.5.3"},
        "cached": False,
        "elapsed_ms": 112.5,
    },
}


def _content(example: dict[str, Any]) -> dict[str, Any]:
    # Both types carry the same JSON text; which one is sent depends on Accept (docs/api.md).
    media = {"schema": ENVELOPE_REF, "example": example}
    return {"application/json": media, "text/plain": media}


def _responses(
    statuses: list[tuple[ErrorKind, str, str | None]], success: dict[str, Any], summary: str
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": summary, "content": _content(success)}}
    for kind, when, detail in statuses:
        message = f"{kind.message}: {detail}" if detail else kind.message
        responses[str(kind.status)] = {
            "description": f"`{message}`. {when}",
            "content": _content({"status": kind.status, "status_message": message, "data": None}),
        }
    return responses


def _integer(description: str, minimum: int, maximum: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum, "description": description}
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


APIKEY_FIELD = {"type": "string", "description": "Your API key."}
ANALYSIS_FORM = {
    "type": "object",
    "required": ["apikey", "type"],
    "properties": {
        "apikey": APIKEY_FIELD,
        "type": {"type": "string", "enum": list(ALL_TYPES), "description": "The analysis."},
        "file": {"type": "string", "format": "binary",
                 "description": "The image, PNG or JPEG (all types but cache)."},
        **{
            parameter.name: _integer(
                f"{type_.name}: {parameter.help}.", parameter.minimum, parameter.maximum
            )
            for type_ in TYPES.values()
            for parameter in type_.parameters
        },
        "id": {"type": "string", "description": "cache: one stored result."},
    },
}


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def api_paths() -> dict[str, Any]:
    analysis_responses = _responses(ANALYSIS_STATUSES, SUCCESS_EXAMPLE, "The analysis.")
    gallery_ok = {"status": 200, "status_message": "OK", "data": {"people": []}}
    gallery_responses = _responses(GALLERY_STATUSES, gallery_ok, "Done.")
    admin_key = _query("apikey", {"type": "string", "description": "An admin key."}, True)
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/api/v2/": {
            "post": {
                "operationId": "analyse",
                "summary": "Analyse an image (or list stored results with type=cache)",
                "description": f"Types: {', '.join(API_TYPES)}, and {CACHE_TYPE}. "
                "The checks apply in the order of the responses below (300, 400, 401, 420, "
                "421, 402, 413, 415, 412, 503). Only successes cost quota.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {"schema": ANALYSIS_FORM},
                        "application/x-www-form-urlencoded": {"schema": ANALYSIS_FORM},
                    },
                },
                "responses": analysis_responses,
            },
            "get": {
                "operationId": "cache",
                "summary": "This key's stored results (type=cache only)",
                "parameters": [
                    _query("apikey", APIKEY_FIELD, True),
                    _query("type", {"type": "string", "enum": [CACHE_TYPE]}, True),
                    _query("limit", _integer("Most results returned (default 10).", 1, 100)),
                    _query("id", {"type": "string", "description": "One stored result."}),
                ],
                "responses": analysis_responses,
            },
        },
        "/api/v2/gallery/": {
            "get": {
                "operationId": "gallery_people",
                "summary": "The gallery's people and their faces (admin keys)",
                "parameters": [admin_key],
                "responses": gallery_responses,
            },
            "post": {
                "operationId": "gallery_enrol",
                "summary": "Enrol a person from one or more photos, one face each (admin keys)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["apikey", "name", "file"],
                                "properties": {
                                    "apikey": {"type": "string", "description": "An admin key."},
                                    "name": {"type": "string"},
                                    "file": {"type": "array",
                                             "items": {"type": "string", "format": "binary"}},
                                },
                            }
                        }
                    },
                },
                "responses": gallery_responses,
            },
        },
        "/api/v2/results/{result_id}": {
            "delete": {
                "operationId": "delete_result",
                "summary": "Delete one of this key's stored results (audited)",
                "parameters": [
                    {"name": "result_id", "in": "path", "required": True,
                     "schema": {"type": "string"}, "description": "data.id of the analysis."},
                    _query("apikey", APIKEY_FIELD, True),
                ],
                "responses": _responses(
                    RESULT_STATUSES,
                    {"status": 200, "status_message": "OK", "data": {"deleted": "3f0c…"}},
                    "Deleted.",
                ),
            }
        },
        "/api/v2/gallery/{name}": {
            "delete": {
                "operationId": "gallery_remove_person",
                "summary": "Remove a person and their faces (admin keys)",
                "parameters": [name, admin_key],
                "responses": gallery_responses,
            }
        },
        "/api/v2/gallery/{name}/faces/{face_id}": {
            "delete": {
                "operationId": "gallery_remove_face",
                "summary": "Remove one face of a person (admin keys)",
                "parameters": [
                    name,
                    {"name": "face_id", "in": "path", "required": True,
                     "schema": {"type": "integer"}},
                    admin_key,
                ],
                "responses": gallery_responses,
            }
        },
    }


def _flat_routes(app: FastAPI) -> list[Any]:
    """Every route, with those of included routers (kept nested by recent FastAPI)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI copies included routes into app.routes
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def install_openapi(app: FastAPI) -> None:
    """Replaces ``app.openapi``: FastAPI's description of the other routes plus api_paths()."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            routes = [
                r
                for r in _flat_routes(app)
                if not (getattr(r, "path", None) or "").startswith(DESCRIBED_HERE)
            ]
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description="A self-hosted server for the imagerecognize.com v2 API. Answers "
                "are JSON; declared as application/json when the request's Accept asks for it, "
                "else text/plain.",
                routes=routes,
            )
            schema["paths"] = {**api_paths(), **schema.get("paths", {})}
            schema.setdefault("components", {}).setdefault("schemas", {})["Envelope"] = (
                ENVELOPE_SCHEMA
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
