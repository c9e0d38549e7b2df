"""AWS JSON 1.1 as Rekognition's clients send it: ``POST /`` with the operation in
``X-Amz-Target: RekognitionService.<Operation>`` and the input as a JSON object of PascalCase
members. Here: the body read within its limit, and the members read and checked, each
failure an InvalidParameterException that names the member."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from server.http.rekognition.errors import (
    IMAGE_TOO_LARGE,
    SERIALIZATION,
    AwsError,
    invalid_parameter,
)
from server.http.upload import whole_body

TARGET_HEADER = "x-amz-target"
TARGET_PREFIX = "RekognitionService."
# The API's own limit on an image's bytes (5 MiB); larger ones are ImageTooLargeException.
MAX_IMAGE_BYTES = 5 * 1024 * 1024
# Two images of 5 MiB as base64 (CompareFaces), and room for the other members.
MAX_BODY_BYTES = 2 * (4 * math.ceil(MAX_IMAGE_BYTES / 3)) + 256 * 1024
COLLECTION_ID = re.compile(r"^[a-zA-Z0-9_.\-]{1,255}$")
EXTERNAL_IMAGE_ID = re.compile(r"^[a-zA-Z0-9_.\-:]{1,255}$")
# A face id: a UUID, or the number of a face enrolled before face ids were UUIDs (the
# default collection may hold such faces); AWS's model has only UUIDs.
FACE_ID = re.compile(
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9]{1,20})$"
)


def operation_of(request: Request) -> str | None:
    """The operation named by X-Amz-Target, or None when the header is absent."""
    target = request.headers.get(TARGET_HEADER)
    if target is None:
        return None
    return target.removeprefix(TARGET_PREFIX) if target.startswith(TARGET_PREFIX) else ""


async def read_body(request: Request) -> bytes:
    """The whole body, never past MAX_BODY_BYTES (ImageTooLargeException beyond it)."""
    return await whole_body(
        request,
        MAX_BODY_BYTES,
        lambda: AwsError(IMAGE_TOO_LARGE, "Request body is too large for the image limit"),
    )


def parse_input(body: bytes) -> dict[str, Any]:
    """The input object; SerializationException for a body that is not a JSON object."""
    if not body.strip():
        return {}
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested deeply
        raise AwsError(SERIALIZATION, "Request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise AwsError(SERIALIZATION, "Request body must be a JSON object")
    return document


@dataclass(frozen=True)
class S3Location:
    bucket: str
    name: str
    version: str | None


@dataclass(frozen=True)
class ImageInput:
    """An image as the request gives it: its bytes, or where it lies in S3."""

    data: bytes | None
    s3: S3Location | None


class Members:
    """An operation's input, read member by member with the model's types and limits."""

    def __init__(self, document: dict[str, Any]):
        self.document = document

    def _get(self, name: str, required: bool) -> Any:
        value = self.document.get(name)
        if value is None and required:
            raise invalid_parameter(f"Missing required parameter {name}")
        return value

    def number(
        self,
        name: str,
        default: float | None = None,
        *,
        low: float = 0.0,
        high: float = 100.0,
        required: bool = False,
    ) -> float | None:
        value = self._get(name, required)
        if value is None:
            return default
        # The SDKs send numbers as the caller passed them: 50 as well as 50.0.
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value
        ):
            raise invalid_parameter(f"{name} must be a number")
        if not low <= value <= high:
            raise invalid_parameter(f"{name} must be between {low:g} and {high:g}")
        return float(value)

    def integer(
        self,
        name: str,
        default: int | None = None,
        *,
        low: int = 0,
        high: int = 2**31 - 1,
        required: bool = False,
    ) -> int | None:
        value = self._get(name, required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_parameter(f"{name} must be an integer")
        if not low <= value <= high:
            raise invalid_parameter(f"{name} must be between {low} and {high}")
        return value

    def string(
        self,
        name: str,
        default: str | None = None,
        *,
        pattern: re.Pattern[str] | None = None,
        choices: Iterable[str] | None = None,
        max_length: int = 2048,
        required: bool = False,
    ) -> str | None:
        value = self._get(name, required)
        if value is None:
            return default
        if not isinstance(value, str) or not value or len(value) > max_length:
            raise invalid_parameter(f"{name} must be a string of 1 to {max_length} characters")
        if pattern is not None and not pattern.match(value):
            raise invalid_parameter(f"{name} must match {pattern.pattern}")
        if choices is not None and value not in set(choices):
            raise invalid_parameter(f"{name} must be one of {', '.join(sorted(choices))}")
        return value

    def strings(
        self,
        name: str,
        *,
        choices: Iterable[str] | None = None,
        pattern: re.Pattern[str] | None = None,
        max_items: int = 4096,
        required: bool = False,
    ) -> list[str]:
        value = self._get(name, required)
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > max_items:
            raise invalid_parameter(f"{name} must be a list of at most {max_items} strings")
        allowed = None if choices is None else set(choices)
        for item in value:
            if not isinstance(item, str):
                raise invalid_parameter(f"{name} must be a list of strings")
            if allowed is not None and item not in allowed:
                raise invalid_parameter(f"{name} must hold only {', '.join(sorted(allowed))}")
            if pattern is not None and not pattern.match(item):
                raise invalid_parameter(f"{name} must hold strings matching {pattern.pattern}")
        if required and not value:
            raise invalid_parameter(f"{name} must hold at least one item")
        return value

    def collection_id(self) -> str:
        value = self.string("CollectionId", pattern=COLLECTION_ID, max_length=255, required=True)
        assert value is not None
        return value

    def image(self, name: str = "Image") -> ImageInput:
        """``Bytes`` (base64 in the JSON) or ``S3Object``; ImageTooLargeException past 5 MiB."""
        value = self._get(name, True)
        if not isinstance(value, dict):
            raise invalid_parameter(f"{name} must be an object with Bytes or S3Object")
        encoded, s3 = value.get("Bytes"), value.get("S3Object")
        if (encoded is None) == (s3 is None):
            raise invalid_parameter(f"{name} must have exactly one of Bytes and S3Object")
        if s3 is not None:
            if not isinstance(s3, dict):
                raise invalid_parameter(f"{name}.S3Object must be an object")
            members = Members(s3)
            bucket = members.string("Bucket", max_length=255, required=True)
            key = members.string("Name", max_length=1024, required=True)
            version = members.string("Version", max_length=1024)
            assert bucket is not None and key is not None
            return ImageInput(None, S3Location(bucket, key, version))
        if not isinstance(encoded, str):
            raise invalid_parameter(f"{name}.Bytes must be base64 text")
        # Checked before decoding: a too-large image costs no decoding.
        if len(encoded) > 4 * math.ceil(MAX_IMAGE_BYTES / 3):
            raise AwsError(IMAGE_TOO_LARGE, "Image size is too large.")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise invalid_parameter(f"{name}.Bytes is not valid base64") from None
        if not data:
            raise invalid_parameter(f"{name}.Bytes must not be empty")
        if len(data) > MAX_IMAGE_BYTES:
            raise AwsError(IMAGE_TOO_LARGE, "Image size is too large.")
        return ImageInput(data, None)
