"""The FastAPI application: state created at start, released at stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.device import choose_device
from server import __version__
from server.api import envelope, router
from server.cors import install_browser_middleware
from server.db import init_db, make_engine
from server.gallery import Gallery
from server.gallery_api import router as gallery_router
from server.keys import KeyStore
from server.memory import IdleTrimmer
from server.model_manager import ModelManager
from server.results import ResultStore
from server.service import AnalysisService
from server.settings import Settings, get_settings
from server.web import install_web

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 3600.0
BLOCKING_THREADS = 8
_APIKEY_IN_QUERY = re.compile(r"(apikey=)[^&\s\"]+")


class RedactApiKeys(logging.Filter):
    """Keeps API keys sent in query strings (GET type=cache) out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _APIKEY_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        return True


async def _purge_periodically(results: ResultStore) -> None:
    while True:
        try:
            removed = await asyncio.to_thread(results.purge_expired)
            if removed:
                log.info("removed %d expired results", removed)
        except Exception:
            log.exception("purging expired results failed")
        await asyncio.sleep(PURGE_INTERVAL_S)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        await asyncio.to_thread(init_db, engine)
        device = choose_device(settings.device)  # torch's threads: see ModelManager
        models = ModelManager(settings, device, Gallery(engine))
        service = AnalysisService(
            settings, KeyStore(engine), ResultStore(engine, settings.result_retention_days), models
        )
        app.state.service = service
        app.state.trimmer = trimmer = IdleTrimmer()
        # Threads for the handlers' short blocking calls (database): AnyIO's default of 40
        # only adds memory, one malloc arena per thread.
        anyio.to_thread.current_default_thread_limiter().total_tokens = BLOCKING_THREADS
        log.info("imagerecognize %s on %s", __version__, device)
        if settings.preload:
            await models.preload()
        purge = asyncio.create_task(_purge_periodically(service.results))
        trim = asyncio.create_task(trimmer.run())
        try:
            yield
        finally:
            purge.cancel()
            trim.cancel()
            await models.close()
            service.close()
            engine.dispose()

    logging.getLogger("uvicorn.access").addFilter(RedactApiKeys())
    app = FastAPI(
        title="imagerecognize",
        version=__version__,
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,  # /docs and /redoc, offline: server/web.py
        redoc_url=None,
    )
    app.include_router(router)
    app.include_router(gallery_router)
    install_browser_middleware(app, settings)
    install_web(app)

    @app.get("/health")
    async def health(request: Request) -> dict[str, object]:
        service: AnalysisService = request.app.state.service
        return {
            "status": "ok",
            "version": __version__,
            "device": str(service.models.device),
            "models": service.models.status(),
        }

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        return envelope(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, _exc: RequestValidationError):
        return envelope(422, "Invalid request")

    return app
