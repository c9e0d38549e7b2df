"""What the routes work with, created at start (server/app.py) and handed to them by FastAPI's
dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from server.gallery import Gallery
from server.keys import KeyStore
from server.memory import IdleTrimmer
from server.pipeline import AnalysisPipeline
from server.results import ResultStore
from server.service import AnalysisService
from server.settings import Settings


@dataclass(frozen=True)
class AppState:
    settings: Settings
    keys: KeyStore
    results: ResultStore
    gallery: Gallery
    pipeline: AnalysisPipeline
    service: AnalysisService
    trimmer: IdleTrimmer


def get_state(request: Request) -> AppState:
    return request.app.state.imagerecognize


State = Annotated[AppState, Depends(get_state)]
