"""Dynamic batching: one bounded queue and one inference thread per loaded model.

Requests enqueue preprocessed inputs; the worker takes up to ``max_batch_size`` of them,
waiting at most ``max_wait_ms`` after the first for more, and runs one model call per group
of inputs with equal ``batch_key``. Each request gets its own output or its own error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from models.base import Recognizer
from server.errors import ModelUnavailableError
from server.pipeline.torch_calls import TorchCalls
from server.telemetry import metrics
from server.telemetry.requests import note_batch

log = logging.getLogger(__name__)


@dataclass
class _Job:
    item: Any
    future: asyncio.Future[Any] = field(repr=False)
    enqueued: float = field(default_factory=time.perf_counter)
    batch_size: int = 0  # of the model call that ran it


def run_batch(model: Recognizer, items: list[Any]) -> list[Any]:
    """Runs ``model.predict`` over items, grouped by batch key, keeping their order, in the
    model's precision (``Recognizer.autocast``: half precision only where set, on CUDA).

    Returns one output or one exception per item: when a grouped call fails, its items are
    retried one by one so that a bad item fails alone.
    """
    with model.autocast():
        return _run_groups(model, items)


def _run_groups(model: Recognizer, items: list[Any]) -> list[Any]:
    results: list[Any] = [None] * len(items)
    groups: dict[Hashable, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(model.batch_key(item), []).append(index)
    for indices in groups.values():
        try:
            outputs = model.predict([items[i] for i in indices])
            if len(outputs) != len(indices):
                raise RuntimeError(
                    f"{model.name} returned {len(outputs)} outputs for {len(indices)} inputs"
                )
            for i, output in zip(indices, outputs, strict=True):
                results[i] = output
        except Exception as batch_error:
            if len(indices) == 1:
                results[indices[0]] = batch_error
                continue
            for i in indices:
                try:
                    results[i] = model.predict([items[i]])[0]
                except Exception as item_error:
                    results[i] = item_error
    return results


class Batcher:
    def __init__(
        self,
        model: Recognizer,
        max_batch_size: int,
        max_wait_ms: float,
        queue_size: int,
        timeout_s: float,
        torch_calls: TorchCalls | None = None,
        workers: int = 1,
    ):
        self.model = model
        # Batches in flight at once: more than one only for models that take concurrent calls
        # (ONNX Runtime sessions; torch models on CPU, see server/pipeline/torch_calls.py).
        self.workers = max(1, workers)
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self.timeout_s = timeout_s
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max(1, queue_size))
        # Torch models run in the threads every torch model shares (TorchCalls); the others
        # (ONNX Runtime) in threads of their own.
        self._torch_calls = torch_calls
        self._executor = (
            None
            if torch_calls is not None
            else ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix=f"infer-{model.name}"
            )
        )
        self._tasks: list[asyncio.Task[None]] = []
        # Requests being decoded for this model: worth waiting for; with none, a lone request
        # runs at once instead of paying max_wait_ms.
        self._incoming = 0
        self.batches_done = 0  # model calls in which at least one input succeeded (warm)
        self._depth = metrics.QUEUE_DEPTH.labels(model.name)
        self._waited = metrics.QUEUE_WAIT.labels(model.name)
        self._inference = metrics.INFERENCE.labels(model.name)
        self._batch_size = metrics.BATCH_SIZE.labels(model.name)

    def start(self) -> None:
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._run()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(ModelUnavailableError("server shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Marks a request that will submit soon (while it is decoded and preprocessed)."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1

    async def run_in_model_threads(self, func: Any, *args: Any) -> Any:
        """Runs ``func`` in one of the model's inference threads, beside its batches (for work
        on the model outside the API's analyses, such as gallery enrolment)."""
        return await self._call(func, *args)

    async def _call(self, func: Any, *args: Any) -> Any:
        if self._torch_calls is not None:
            return await self._torch_calls.submit(func, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def has_room(self) -> bool:
        """Whether a request starting now would find a place in the queue, counting those
        being decoded for it. Safe to ask from any thread (an estimate there)."""
        return self._queue.qsize() + self._incoming < self._queue.maxsize

    @staticmethod
    def overloaded() -> ModelUnavailableError:
        return ModelUnavailableError("server overloaded, retry later", retry_after=1)

    async def submit(self, item: Any) -> Any:
        """The model's output for one input; 503 when the queue is full or the deadline passes."""
        self.start()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        job = _Job(item, future)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise self.overloaded() from None
        self._depth.set(self._queue.qsize())
        try:
            output = await asyncio.wait_for(future, timeout=self.timeout_s)
            note_batch(job.batch_size)
            return output
        except TimeoutError:
            raise ModelUnavailableError(
                "request timed out in the model queue", retry_after=1
            ) from None
        # A request cancelled here (client gone) leaves its future cancelled: the worker
        # drops it before its model call.

    async def _collect(self) -> list[_Job]:
        jobs = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(jobs) < self.max_batch_size:
            try:
                jobs.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0 or self._incoming == 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [job for job in jobs if not job.future.done()]

    async def _run(self) -> None:
        while True:
            jobs = await self._collect()
            self._depth.set(self._queue.qsize())
            if not jobs:
                continue
            started = time.perf_counter()
            for job in jobs:
                job.batch_size = len(jobs)
                self._waited.observe(started - job.enqueued)
            self._batch_size.observe(len(jobs))
            try:
                outputs = await self._call(run_batch, self.model, [job.item for job in jobs])
            except Exception as exc:
                log.exception("batch of %s failed", self.model.name)
                outputs = [exc] * len(jobs)
            self._inference.observe(time.perf_counter() - started)
            if any(not isinstance(output, BaseException) for output in outputs):
                self.batches_done += 1
            for job, output in zip(jobs, outputs, strict=True):
                if job.future.done():
                    continue
                if isinstance(output, BaseException):
                    job.future.set_exception(output)
                else:
                    job.future.set_result(output)
