"""Google's request read into ours: the images of a `BatchAnnotateImagesRequest` (lowerCamelCase
proto JSON, as the REST clients and curl send it; the gRPC server hands its message in the same
form), each with the analyses its features need. Pure functions; errors are `RequestError`s
naming the field, as Google's own 400s do."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from server.catalog import DETECT_FACES, DETECT_TEXT, MAX_INT, NSFW, OBJECTS

# At most this many images per call, as Google.
MAX_IMAGES = 16
# maxResults when a feature gives none (0 or absent), as Google's labels default.
DEFAULT_MAX_RESULTS = 10
# The lowest confidence (0..100) of a label or an object answered: the one /api/v2/'s
# examples use, and about where Google's labels stop.
MIN_CONFIDENCE = 50


class FeatureType(IntEnum):
    """google.cloud.vision.v1.Feature.Type: the numbers the clients send, the names curl
    sends."""

    TYPE_UNSPECIFIED = 0
    FACE_DETECTION = 1
    LANDMARK_DETECTION = 2
    LOGO_DETECTION = 3
    LABEL_DETECTION = 4
    TEXT_DETECTION = 5
    SAFE_SEARCH_DETECTION = 6
    IMAGE_PROPERTIES = 7
    CROP_HINTS = 9
    WEB_DETECTION = 10
    DOCUMENT_TEXT_DETECTION = 11
    PRODUCT_SEARCH = 12
    OBJECT_LOCALIZATION = 19


# The analysis type answering each feature we serve; the others answer nothing.
FEATURE_TYPES: dict[FeatureType, str] = {
    FeatureType.FACE_DETECTION: DETECT_FACES.name,
    FeatureType.LABEL_DETECTION: OBJECTS.name,
    FeatureType.OBJECT_LOCALIZATION: OBJECTS.name,
    FeatureType.TEXT_DETECTION: DETECT_TEXT.name,
    FeatureType.DOCUMENT_TEXT_DETECTION: DETECT_TEXT.name,
    FeatureType.SAFE_SEARCH_DETECTION: NSFW.name,
}
UNSERVED = frozenset(FeatureType) - set(FEATURE_TYPES) - {FeatureType.TYPE_UNSPECIFIED}

# Each type's parameters: every label above the threshold (each feature cuts its own list at
# its maxResults) and both nsfw scores.
TYPE_PARAMS: dict[str, dict[str, int]] = {
    OBJECTS.name: {"max_labels": MAX_INT, "min_confidence": MIN_CONFIDENCE},
    NSFW.name: {"nsfw_min_confidence": 0},
    DETECT_FACES.name: {},
    DETECT_TEXT.name: {},
}


class RequestError(Exception):
    """A malformed request: 400 INVALID_ARGUMENT with this message, for the whole call."""


@dataclass(frozen=True)
class ImageSource:
    """Where an image's bytes come from: ``content`` (decoded), else a URL."""

    content: bytes | None = None
    image_uri: str | None = None
    gcs_image_uri: str | None = None


@dataclass(frozen=True)
class ImageRequest:
    """One entry of ``requests[]``: the image and, per feature served, its maxResults."""

    image: ImageSource
    features: dict[FeatureType, int] = field(default_factory=dict)

    @property
    def types(self) -> dict[str, dict[str, int]]:
        """The analyses the features need, each once, with their parameters."""
        return {FEATURE_TYPES[f]: TYPE_PARAMS[FEATURE_TYPES[f]] for f in self.features}


def feature_type(value: Any, where: str) -> FeatureType:
    """A feature's type from its name or number; unknown ones are refused, as Google does."""
    if isinstance(value, bool):
        raise RequestError(f"Invalid value at '{where}' ({value!r})")
    if isinstance(value, int):
        try:
            return FeatureType(value)
        except ValueError:
            raise RequestError(
                f"Invalid value at '{where}' (type.googleapis.com/"
                f"google.cloud.vision.v1.Feature.Type), {value}"
            ) from None
    if isinstance(value, str):
        name = value.strip()
        if name in FeatureType.__members__:
            return FeatureType[name]
        if name.isdigit():
            return feature_type(int(name), where)
    raise RequestError(
        f"Invalid value at '{where}' (type.googleapis.com/google.cloud.vision.v1.Feature.Type), "
        f"{str(value)[:100]!r}"
    )


def _max_results(value: Any, where: str) -> int:
    if value is None or value == 0 or value == "":
        return DEFAULT_MAX_RESULTS
    if isinstance(value, bool):
        raise RequestError(f"Invalid value at '{where}' (TYPE_INT32), {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RequestError(
            f"Invalid value at '{where}' (TYPE_INT32), {str(value)[:100]!r}"
        ) from None
    if isinstance(value, float) and value != number:
        raise RequestError(f"Invalid value at '{where}' (TYPE_INT32), {value!r}")
    if not -(2**31) <= number < 2**31:
        raise RequestError(f"Invalid value at '{where}' (TYPE_INT32), {number}")
    # Google answers no results for a negative maxResults; we answer the default instead
    # of nothing, which no caller means.
    return number if number > 0 else DEFAULT_MAX_RESULTS


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"Invalid value at '{where}': expected an object")
    return value


def _text(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RequestError(f"Invalid value at '{where}' (TYPE_STRING), {str(value)[:100]!r}")
    return value


def decode_content(text: str, where: str) -> bytes:
    """Standard base64 (the clients'), or URL-safe (as proto JSON also allows)."""
    compact = "".join(text.split())
    try:
        if "-" in compact or "_" in compact:
            return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(
            f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed"
        ) from None


def image_source(value: Any, where: str) -> ImageSource:
    image = _object(value, where)
    content = image.get("content")
    if content not in (None, ""):
        if isinstance(content, bytes | bytearray):  # from a gRPC message, already bytes
            return ImageSource(content=bytes(content))
        if not isinstance(content, str):
            raise RequestError(f"Invalid value at '{where}.content' (TYPE_BYTES)")
        return ImageSource(content=decode_content(content, f"{where}.content"))
    source = _object(image.get("source"), f"{where}.source")
    uri = _text(source.get("imageUri", source.get("image_uri")), f"{where}.source.imageUri")
    gcs = _text(
        source.get("gcsImageUri", source.get("gcs_image_uri")), f"{where}.source.gcsImageUri"
    )
    return ImageSource(image_uri=uri, gcs_image_uri=gcs)


def image_request(value: Any, index: int) -> ImageRequest:
    where = f"requests[{index}]"
    entry = _object(value, where)
    features_value = entry.get("features") or []
    if not isinstance(features_value, list):
        raise RequestError(f"Invalid value at '{where}.features': expected a list")
    features: dict[FeatureType, int] = {}
    for number, feature_value in enumerate(features_value):
        at = f"{where}.features[{number}]"
        feature = _object(feature_value, at)
        kind = feature_type(feature.get("type", 0), f"{at}.type")
        given = feature.get("maxResults", feature.get("max_results"))
        limit = _max_results(given, f"{at}.maxResults")
        if kind in FEATURE_TYPES:
            # A feature named twice: its largest maxResults.
            features[kind] = max(limit, features.get(kind, 0))
    return ImageRequest(image_source(entry.get("image"), f"{where}.image"), features)


def batch_request(body: Any) -> list[ImageRequest]:
    """The images of a ``BatchAnnotateImagesRequest``, in order (1 to 16 of them)."""
    if not isinstance(body, dict):
        raise RequestError("Invalid JSON payload received. Expected an object.")
    entries = body.get("requests")
    if entries is None or entries == []:
        raise RequestError("No requests specified.")
    if not isinstance(entries, list):
        raise RequestError("Invalid value at 'requests': expected a list")
    if len(entries) > MAX_IMAGES:
        raise RequestError(f"Too many images per request: {len(entries)}, at most {MAX_IMAGES}.")
    return [image_request(entry, index) for index, entry in enumerate(entries)]
