"""DeepStack's shapes: its parameters read into ours, our analyses written in its answers, our
errors in its envelope and status codes. Pure functions; the routes are in routes.py.

Our confidences are 0..100 with two decimals; DeepStack's are 0..1, so every confidence is
divided by 100 (four decimals). Boxes are our integer pixels of the posted image, as
corners."""

from __future__ import annotations

import re
from typing import Any

from fastapi.responses import JSONResponse

from server.errors import ApiError, ErrorKind
from server.http.respond import NO_SNIFF_NO_STORE

MIN_CONFIDENCE_FIELD = "min_confidence"
API_KEY_FIELD = "api_key"
IMAGE_FIELD = "image"
USERID_FIELD = "userid"
# DeepStack's defaults per route.
DETECTION_MIN_CONFIDENCE = 0.4
FACE_MIN_CONFIDENCE = 0.55
RECOGNITION_MIN_CONFIDENCE = 0.67
UNKNOWN_USER = "unknown"

# A plain decimal number ("0.4", ".45", "1", "4e-1"), ASCII digits only: float() alone would
# also take "nan", "inf" and Arabic-Indic digits.
_NUMBER = re.compile(
    r"^\s*\+?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][+-]?[0-9]{1,3})?\s*$"
)

# DeepStack's status for each of our errors. DeepStack itself answers 400 for a bad image or
# parameter, 401 for a bad key, 500 on a timeout; 402 (quota) and 503 (overloaded) are ours.
STATUS: dict[ErrorKind, int] = {
    ErrorKind.NO_DATA: 400,
    ErrorKind.APIKEY_MISSING: 401,
    ErrorKind.APIKEY_INVALID: 401,
    ErrorKind.APIKEY_NOT_ADMIN: 401,
    ErrorKind.QUOTA_REACHED: 402,
    ErrorKind.INVALID_FILE: 400,
    ErrorKind.IMAGE_TOO_LARGE: 413,
    ErrorKind.INVALID_FORMAT: 400,
    ErrorKind.INVALID_TYPE: 400,
    ErrorKind.INVALID_PARAMETER: 400,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.CLIENT_CLOSED: 499,
    ErrorKind.INTERNAL: 500,
}
_MESSAGES: dict[ErrorKind, str] = {
    ErrorKind.NO_DATA: "No valid image file found",
    ErrorKind.APIKEY_MISSING: "Incorrect api key: none sent, and this server charges no "
    "anonymous calls (its operator allows them with IMAGERECOGNIZE_DEEPSTACK_ANONYMOUS_KEY)",
    ErrorKind.APIKEY_INVALID: "Incorrect api key",
    ErrorKind.APIKEY_NOT_ADMIN: "Incorrect api key: the gallery needs an admin key",
    ErrorKind.INVALID_FILE: "invalid image: the file does not decode",
    ErrorKind.INVALID_FORMAT: "invalid image: not a PNG or JPEG file",
}


def error_body(error: ApiError) -> tuple[int, str]:
    """DeepStack's status and ``error`` text for one of our errors."""
    if error.kind in _MESSAGES:
        message = _MESSAGES[error.kind]
    elif error.kind is ErrorKind.INVALID_PARAMETER and error.detail:
        message = error.detail  # e.g. "image: no face found", already for the client
    else:
        message = error.status_message
    return STATUS[error.kind], message


class DeepStackFailureError(Exception):
    """An answer in DeepStack's terms that none of our errors is: its status and text."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.headers = headers


def failure(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"success": false, "error", "duration": 0}`` with the HTTP status ``status``."""
    return JSONResponse(
        {"success": False, "error": message, "duration": 0},
        status_code=status,
        headers={**NO_SNIFF_NO_STORE, **(headers or {})},
    )


def error_response(error: ApiError | DeepStackFailureError) -> JSONResponse:
    """One of our errors in DeepStack's envelope, with DeepStack's status code."""
    if isinstance(error, DeepStackFailureError):
        return failure(error.status, error.message, error.headers)
    status, message = error_body(error)
    retry = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return failure(status, message, retry)


def success_response(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        {"success": True, **body, "duration": 0}, status_code=200, headers=NO_SNIFF_NO_STORE
    )


def parse_min_confidence(raw: str | None, default: float) -> float:
    """``min_confidence`` as a number from 0 to 1 (missing or empty: ``default``); else 400."""
    if raw is None or raw.strip() == "":
        return default
    value = float(raw) if _NUMBER.match(raw) else -1.0
    if not 0.0 <= value <= 1.0:
        raise ApiError(
            ErrorKind.INVALID_PARAMETER, "Invalid value for min_confidence (a number from 0 to 1)"
        )
    return value


def percent_floor(min_confidence: float) -> int:
    """Our integer 0..100 threshold at or below a DeepStack one (the exact cut follows)."""
    return max(0, min(100, int(min_confidence * 100.0 + 1e-9)))


def ratio(confidence: float) -> float:
    """Our 0..100 confidence on DeepStack's 0..1 scale."""
    return round(float(confidence) / 100.0, 4)


def corners(box: dict[str, int]) -> dict[str, int]:
    """Our box (left, top, width, height) as DeepStack's corners."""
    return {
        "x_min": box["left"],
        "y_min": box["top"],
        "x_max": box["left"] + box["width"],
        "y_max": box["top"] + box["height"],
    }


def _by_confidence(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(predictions, key=lambda p: p["confidence"], reverse=True)  # stable


def detections(objects: list[dict[str, Any]], min_confidence: float) -> list[dict[str, Any]]:
    """objects' labels with boxes, one prediction per box: lower-case COCO names, most
    confident first. The whole-image classifier's labels (no boxes) are left out."""
    predictions = []
    for label in objects:
        for instance in label["instances"]:
            confidence = ratio(instance["confidence"])
            if confidence >= min_confidence:
                predictions.append(
                    {
                        "label": label["name"].lower(),
                        "confidence": confidence,
                        **corners(instance["box"]),
                    }
                )
    return _by_confidence(predictions)


def faces(objects: list[dict[str, Any]], min_confidence: float) -> list[dict[str, Any]]:
    """detect_faces' faces, without labels (as DeepStack's /face)."""
    found = [{"confidence": ratio(face["confidence"]), **corners(face["box"])} for face in objects]
    return _by_confidence([face for face in found if face["confidence"] >= min_confidence])


def recognitions(
    known: list[dict[str, Any]], unrecognized: list[dict[str, Any]], min_confidence: float
) -> list[dict[str, Any]]:
    """celebrities' faces with ``userid``: a gallery match at or above ``min_confidence``
    names its person; other faces are ``"unknown"`` with confidence 0, as DeepStack's."""
    predictions = []
    for person in known:
        confidence = ratio(person["confidence"])
        if confidence >= min_confidence:
            predictions.append(
                {"userid": person["name"], "confidence": confidence, **corners(person["box"])}
            )
        else:
            unrecognized = [*unrecognized, person]
    for face in unrecognized:
        predictions.append({"userid": UNKNOWN_USER, "confidence": 0.0, **corners(face["box"])})
    return _by_confidence(predictions)


def scene(objects: list[dict[str, Any]]) -> tuple[str, float] | None:
    """The whole-image classifier's best label among objects' labels: those without boxes,
    and those whose confidence is above their best box's (the classifier gave it)."""
    candidates = []
    for label in objects:
        boxes = [instance["confidence"] for instance in label["instances"]]
        if not boxes or label["confidence"] > max(boxes):
            candidates.append((label["name"], label["confidence"]))
    if not candidates:
        return None
    name, confidence = max(candidates, key=lambda candidate: candidate[1])
    return name, ratio(confidence)


def text_lines(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """detect_text's lines, in reading order: ``label`` is the line's text."""
    return [
        {"label": line["text"], "confidence": ratio(line["confidence"]), **corners(line["box"])}
        for line in objects
    ]


def names_found(predictions: list[dict[str, Any]], key: str, nothing: str) -> str:
    """CodeProject.AI's summary: "Found person, car" (each name once), or ``nothing``."""
    names = list(dict.fromkeys(str(p[key]) for p in predictions))
    return f"Found {', '.join(names)}" if names else nothing


def count_found(predictions: list[dict[str, Any]], noun: str, nothing: str) -> str:
    """ "Found 2 faces", or ``nothing``."""
    count = len(predictions)
    return f"Found {count} {noun}{'s' if count != 1 else ''}" if count else nothing
