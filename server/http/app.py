"""The FastAPI application: state created at start, released at stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from urllib.parse import unquote_plus

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.runtimes.device import choose_device
from server import __version__
from server.http import compreface, deepstack, google, rekognition, v2
from server.http.cors import install_browser_middleware
from server.http.google.grpc_service import start_grpc
from server.http.observability import ObservabilityMiddleware
from server.http.ops_routes import router as ops_router
from server.http.respond import RequestIdMiddleware, envelope
from server.http.state import AppState, Service
from server.http.web import install_web
from server.ops.drain import Drain
from server.ops.health import Readiness
from server.ops.memory import IdleTrimmer
from server.ops.prepare import prepare_models
from server.pipeline.analysis import AnalysisPipeline
from server.pipeline.placement import gpu_requirement_problem, log_placements
from server.service.application import ApplicationService
from server.settings import Settings, get_settings
from server.store.db import open_database, utcnow
from server.store.gallery import Gallery
from server.store.keys import KeyStore
from server.store.results import ResultStore
from server.telemetry import metrics

log = logging.getLogger(__name__)

# The API dialects: each a sub-package of server/http/ with one router (docs/design.md,
# "Adding a dialect"). Google's comes last: it answers every path under /v1/ but
# DeepStack's /v1/vision/ and /v1/image/.
DIALECTS = (v2, compreface, rekognition, deepstack, google)
RECLAIM_INTERVAL_S = 60.0
# A reservation older than the request timeout plus this is abandoned whoever holds it.
RESERVATION_GRACE_S = 300.0
BLOCKING_THREADS = 8
_QUERY_FIELD = re.compile(r"([?&])([^&=\s\"]*)=([^&\s\"]*)")


def _redact_field(match: re.Match[str]) -> str:
    # The server decodes field names ("api%6Bey" is apikey): judge the decoded name.
    if unquote_plus(match.group(2)).strip().lower() == "apikey":
        return f"{match.group(1)}{match.group(2)}=***"
    return match.group(0)


class RedactApiKeys(logging.Filter):
    """Keeps API keys sent in query strings (GET type=cache) out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _QUERY_FIELD.sub(_redact_field, a) if isinstance(a, str) and "?" in a else a
                for a in record.args
            )
        return True


async def _purge_periodically(results: ResultStore, interval_s: float) -> None:
    """Enforces the retention: deletes the results older than it, at start and then every
    ``interval_s``, off the event loop."""
    while True:
        try:
            removed = await asyncio.to_thread(results.purge_expired)
            if removed:
                log.info("deleted %d results older than the retention", removed)
        except Exception:
            log.exception("deleting expired results failed")
        await asyncio.sleep(interval_s)


async def _reclaim_periodically(keys: KeyStore, older_than_s: float) -> None:
    """Gives back quota units of analyses that will never store a result (their process is
    gone): at start, and every minute for the other processes that share the database."""
    while True:
        try:
            await asyncio.to_thread(keys.reclaim_abandoned, older_than_s)
        except Exception:
            log.exception("giving back abandoned quota reservations failed")
        await asyncio.sleep(RECLAIM_INTERVAL_S)


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = utcnow
) -> FastAPI:
    """The app; ``clock`` (UTC, aware) decides stored results' age: a test's own clock."""
    settings = settings or get_settings()
    # Before anything starts: the one-line reason and exit status 1, no traceback, also under
    # a bare `uvicorn --factory`; `serve` checks first, so that it never starts uvicorn.
    problem = gpu_requirement_problem(settings)
    if problem is not None:
        raise SystemExit(f"error: {problem}")
    drain = Drain(settings.shutdown_grace_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Keys' hashes, results and face crops: the owner's only (when created here).
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        engine = await asyncio.to_thread(open_database, settings.resolved_database_url)
        device = choose_device(settings.device)  # torch's threads: see ModelManager
        gallery = Gallery(engine)
        pipeline = AnalysisPipeline(settings, device, gallery=gallery)
        keys = KeyStore(engine)
        results = ResultStore(
            engine,
            settings.result_retention_days,
            storing=settings.store_results,
            clock=clock,
        )
        trimmer = IdleTrimmer()
        abandoned_after_s = settings.request_timeout_s + RESERVATION_GRACE_S
        await asyncio.to_thread(keys.reclaim_abandoned, abandoned_after_s)
        app.state.imagerecognize = AppState(
            settings=settings,
            service=ApplicationService(settings, keys, results, gallery, pipeline),
            trimmer=trimmer,
        )
        # Threads for the handlers' short blocking calls (database): AnyIO's default of 40
        # only adds memory, one malloc arena per thread.
        anyio.to_thread.current_default_thread_limiter().total_tokens = BLOCKING_THREADS
        readiness = Readiness(pipeline, engine, drain)
        app.state.readiness = readiness
        log.info("imagerecognize %s on %s", __version__, device)
        log_placements(settings, device)
        if settings.preload:
            # Before anything listens: uvicorn calls listen() on its socket (its own with one
            # worker, the parent's bound one with several) only once this startup returns.
            await prepare_models(pipeline, readiness)
        else:
            log.info("models load on first use (IMAGERECOGNIZE_PRELOAD=false)")
        vision_grpc = await start_grpc(settings, lambda: app.state.imagerecognize)
        drain.install(asyncio.get_running_loop())
        purge = asyncio.create_task(
            _purge_periodically(results, settings.result_purge_interval_s)
        )
        trim = asyncio.create_task(trimmer.run())
        reclaim = asyncio.create_task(_reclaim_periodically(keys, abandoned_after_s))
        try:
            yield
        finally:
            drain.uninstall()
            if vision_grpc is not None:
                await vision_grpc.stop()
            purge.cancel()
            trim.cancel()
            reclaim.cancel()
            await pipeline.close()
            engine.dispose()
            metrics.process_exiting()

    logging.getLogger("uvicorn.access").addFilter(RedactApiKeys())
    app = FastAPI(
        title="imagerecognize",
        version=__version__,
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,  # /docs and /redoc, offline: server/http/web.py
        redoc_url=None,
    )
    app.include_router(ops_router)
    for dialect in DIALECTS:
        app.include_router(dialect.router)
    install_browser_middleware(app, settings)
    install_web(app)
    # Outermost (added last): every answer, a refused one too, has its id, its log line and
    # its place in the metrics.
    app.add_middleware(ObservabilityMiddleware, drain=drain)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/health")
    async def health(service: Service) -> dict[str, object]:
        return {"status": "ok", "version": __version__, **service.models_status()}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        return envelope(exc.status_code, str(exc.detail), headers=exc.headers)  # 405's Allow

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, _exc: RequestValidationError):
        return envelope(422, "Invalid request")

    return app
