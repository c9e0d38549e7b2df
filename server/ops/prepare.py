"""Preparing the served models before the server listens (``IMAGERECOGNIZE_PRELOAD``, on by
default): each model's one-time conversions into the model folder, the objects classifier's
torch.compile, its load and one warm-up batch, with a log line per model saying how long.

``serve --workers N`` converts and compiles once, in a process of its own, before the
workers start (``prepare_model_folder``): then each worker finds the converted weights and
the compiled code in the model folder, and only loads and warms (``prepare_models``)."""

from __future__ import annotations

import asyncio
import logging
import logging.config
import time
from typing import Any

from models.runtimes.device import choose_device
from server.errors import ModelUnavailableError
from server.ops.health import Readiness
from server.pipeline.analysis import AnalysisPipeline
from server.pipeline.model_manager import ModelManager
from server.settings import Settings
from server.telemetry import metrics

log = logging.getLogger(__name__)


async def prepare_models(pipeline: AnalysisPipeline, readiness: Readiness) -> int:
    """Loads and warms every served model, one after the other (each takes every core); the
    number prepared. A model that fails is logged and its type answers 503, as it would on
    first use; the others are still prepared."""
    models = pipeline.models
    served = models.served_types()
    started = time.perf_counter()
    prepared = 0
    for index, type_ in enumerate(served, start=1):
        name = models.model_class(type_).name
        log.info("preparing %s (%s), %d of %d", type_, name, index, len(served))
        loading = time.perf_counter()
        try:
            await models.batcher(type_)
        except ModelUnavailableError as exc:
            log.error("%s (%s) not prepared: %s; it answers 503", type_, name, exc)
            continue
        warming = time.perf_counter()
        problem = await readiness.warm(type_)
        done = time.perf_counter()
        if problem is not None:
            log.error("%s (%s) loaded, but its warm-up batch failed: %s", type_, name, problem)
            continue
        prepared += 1
        log.info(
            "prepared %s (%s) in %.1f s: loaded in %.1f s (conversions and compile included), "
            "warm-up batch %.2f s",
            type_, name, done - loading, warming - loading, done - warming,
        )
    log.info(
        "prepared %d of %d models in %.1f s", prepared, len(served), time.perf_counter() - started
    )
    return prepared


def prepare_model_folder(settings: Settings, log_config: dict[str, Any]) -> None:
    """Loads every served model once and lets it go: what a load writes into the model folder
    (converted weights, TorchInductor's compiled code) is then there for every worker. Runs in
    a process of its own, so that the supervising process never holds torch's memory."""
    logging.config.dictConfig(log_config)
    started = time.perf_counter()
    log.info("preparing the model folder %s before the workers start", settings.resolved_model_dir)

    async def load_and_release() -> None:
        models = ModelManager(settings, choose_device(settings.device))
        try:
            await models.preload()  # each load logs its own line; a failure is the worker's too
        finally:
            await models.close()

    try:
        asyncio.run(load_and_release())
    finally:
        # Its gauges (models loaded, then unloaded) leave the workers' sums.
        metrics.process_exiting()
    log.info("model folder prepared in %.1f s", time.perf_counter() - started)
