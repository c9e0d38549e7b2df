"""The key of a v2 request that names it in its form (``apikey``), read by a dependency for
the routes that authenticate before anything else (the gallery, deleting a result)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from server.errors import ApiError, ErrorKind
from server.http.state import Service
from server.http.upload import Upload, UploadTooLargeError, read_upload
from server.service.application import KeyRecord


@dataclass(frozen=True)
class KeyedForm:
    upload: Upload
    key: KeyRecord


async def read_form(request: Request, service: Service) -> Upload:
    try:
        return await read_upload(request, service.settings.max_upload_bytes)
    except UploadTooLargeError:
        raise ApiError(ErrorKind.IMAGE_TOO_LARGE) from None


async def keyed_form(request: Request, service: Service) -> KeyedForm:
    """The request's fields and files, and the key they name: else 413, 400 or 401."""
    upload = await read_form(request, service)
    return KeyedForm(upload, await service.authenticate(upload.fields.get("apikey")))


async def admin_form(request: Request, service: Service) -> KeyedForm:
    """The same, from an admin key (the gallery is the operator's): else 401."""
    upload = await read_form(request, service)
    key = await service.authenticate(upload.fields.get("apikey"), admin=True)
    return KeyedForm(upload, key)


Keyed = Annotated[KeyedForm, Depends(keyed_form)]
Admin = Annotated[KeyedForm, Depends(admin_form)]
