"""Which requests to /api/v2/ are answered, checked in the order of docs/api.md's table:

    300 → 400 → 401 → 420 → 421 → 402 → 413 / 415 / 412 → 503

This module runs the checks of the form (300 to 421, and an upload cut off at the size limit,
which runs the same checks on the fields already received and then answers 413: docs/api.md,
"Oversized uploads"); the service (server/service/application.py) runs the rest with the quota
taken (``ApplicationService.analyze``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from server.catalog import CACHE_TYPE
from server.errors import ApiError, ErrorKind
from server.service.checks import check_parameters, check_type
from server.service.form import Upload
from server.store.keys import KeyRecord


@dataclass(frozen=True)
class FormRequest:
    """A /api/v2/ request past the form's checks."""

    key: KeyRecord
    type: str
    params: dict[str, Any]
    file: bytes | None  # None for type=cache


async def check_form(
    upload: Upload,
    is_get: bool,
    *,
    authenticate: Callable[[str], Awaitable[KeyRecord | None]],
    remaining: Callable[[KeyRecord], Awaitable[int | None]],
    cut_off: bool = False,
) -> FormRequest:
    """Runs the form's checks top to bottom; raises the first that fails. With ``cut_off``
    it always raises (413 at the latest)."""
    too_large = ApiError(ErrorKind.IMAGE_TOO_LARGE)

    # 300: nothing received.
    if upload.empty and not cut_off:
        raise ApiError(ErrorKind.NO_DATA)

    # 400: no key.
    apikey = upload.fields.get("apikey", "").strip()
    if not apikey:
        raise too_large if cut_off else ApiError(ErrorKind.APIKEY_MISSING)

    # 401: unknown or revoked key.
    key = await authenticate(apikey)
    if key is None:
        raise ApiError(ErrorKind.APIKEY_INVALID)

    # 420: unknown type (a cut-off body may not have reached it).
    type_ = check_type(upload, is_get, partial=cut_off)
    if type_ is None:
        raise too_large

    # 421: the type's parameters, each missing or malformed one named.
    params = check_parameters(type_, upload, partial=cut_off)

    if type_ == CACHE_TYPE:  # free, and needs no image
        if cut_off:
            raise too_large
        return FormRequest(key, type_, params, None)

    if cut_off:  # 402, then the file itself is too large
        if await remaining(key) == 0:
            raise ApiError(ErrorKind.QUOTA_REACHED)
        raise too_large

    assert upload.file is not None  # 421 otherwise
    return FormRequest(key, type_, params, upload.file)
