"""What the routes work with, created at start (server/http/app.py) and handed to them by FastAPI's
dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from server.ops.memory import IdleTrimmer
from server.pipeline.analysis import AnalysisPipeline
from server.service.analysis import AnalysisService
from server.settings import Settings
from server.store.gallery import Gallery
from server.store.keys import KeyStore
from server.store.results import ResultStore


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
