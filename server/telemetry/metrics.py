"""Prometheus metrics: the names dashboards rely on (docs/deployment.md, "What to monitor").

With one server process the default registry answers, with the library's process, platform
and garbage-collector collectors. With several (``serve --workers N``) every worker writes
its values into ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, set up
by ``serve`` before the workers start) and ``/metrics``, whichever worker answers it, sums
them over all workers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

REQUESTS = Counter(
    "imagerecognize_requests",
    "Answered API requests, by type (objects, ..., cache, gallery; unknown when the request "
    "named none the server knows) and HTTP status.",
    ["type", "status"],
)
REQUEST_DURATION = Histogram(
    "imagerecognize_request_duration_seconds",
    "Time from a request's headers to the end of its answer, by type.",
    ["type"],
    buckets=SECONDS_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "imagerecognize_queue_wait_seconds",
    "Time an image waited in its model's queue before its batch started.",
    ["model"],
    buckets=WAIT_BUCKETS,
)
INFERENCE = Histogram(
    "imagerecognize_inference_seconds",
    "Duration of one batched model call.",
    ["model"],
    buckets=SECONDS_BUCKETS,
)
BATCH_SIZE = Histogram(
    "imagerecognize_batch_size",
    "Images per batched model call.",
    ["model"],
    buckets=BATCH_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "imagerecognize_queue_depth",
    "Images waiting in a model's queue (summed over the server's processes).",
    ["model"],
    multiprocess_mode="livesum",
)
MODEL_LOADED = Gauge(
    "imagerecognize_model_loaded",
    "1 when the model is loaded on the device (in every live server process), else 0.",
    ["model", "device"],
    multiprocess_mode="livemin",
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_DIR_ENV) or None


def prepare_multiprocess(workers: int) -> Path | None:
    """Before ``workers`` > 1 processes start: a fresh folder for their values, or the
    operator's ``PROMETHEUS_MULTIPROC_DIR`` emptied of a previous run's files. Returns a
    folder made here (the caller removes it at exit)."""
    existing = multiprocess_dir()
    if existing:
        for stale in Path(existing).glob("*.db"):
            stale.unlink()
        return None
    if workers <= 1:
        return None
    made = Path(tempfile.mkdtemp(prefix="imagerecognize-metrics-"))
    os.environ[MULTIPROC_DIR_ENV] = str(made)
    return made


def remove_multiprocess_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def process_exiting() -> None:
    """A worker that stops: its live gauges leave the sums."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())


def exposition() -> tuple[bytes, str]:
    """The text format of every metric, and its content type."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
