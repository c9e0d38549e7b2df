"""What the routes work with, created at start (server/http/app.py) and handed to them by FastAPI's
dependencies: the settings and the application service, nothing below it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from server.ops.memory import IdleTrimmer
from server.service.application import ApplicationService
from server.settings import Settings


@dataclass(frozen=True)
class AppState:
    settings: Settings
    service: ApplicationService
    trimmer: IdleTrimmer


def get_state(request: Request) -> AppState:
    return request.app.state.imagerecognize


State = Annotated[AppState, Depends(get_state)]


def get_service(request: Request) -> ApplicationService:
    return get_state(request).service


Service = Annotated[ApplicationService, Depends(get_service)]
