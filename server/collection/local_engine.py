"""The local engine of `imagerecognize analyze`: one process, one analysis pipeline.

A bounded pipeline: the walk and the file reads run in a small thread pool; at most
``in_flight`` files are between their read and their written lines, each one's types
analysed concurrently through the pipeline (whose batchers group the images of many files
into one model call); finished lines go to one writer, which appends and fsyncs whatever has
gathered while its last fsync ran. Memory depends on ``in_flight``, never on the number of
files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from models.runtimes.device import choose_device
from server.collection.files import (
    OK,
    FileRead,
    Found,
    Job,
    ResultsFile,
    RunError,
    Tally,
    error_status,
    line_key,
    make_line,
    read_file,
    walk,
)
from server.errors import ModelUnavailableError, api_error
from server.pipeline.analysis import AnalysisPipeline
from server.settings import Settings
from server.store.db import open_database
from server.store.gallery import Gallery

log = logging.getLogger(__name__)

READ_THREADS = 4  # file reads wait on the disk, not the CPU
WALK_CHUNK = 64
SHARED_RESULTS = 256  # recent answers kept for files with the same bytes


def in_flight_limit(settings: Settings, device_type: str) -> int:
    """Files between read and write at once: enough for full batches and busy decoders."""
    if device_type == "cuda":
        return 64
    return max(16, 4 * settings.decode_threads)


class LocalRun:
    def __init__(self, job: Job, settings: Settings, results: ResultsFile, tally: Tally):
        self.job = job
        self.settings = settings
        self.results = results
        self.tally = tally
        self.stop = asyncio.Event()
        self.failure: RunError | None = None
        self.read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="read")
        self.write_pool = ThreadPoolExecutor(1, thread_name_prefix="write")
        self.pending: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        self.analyses: dict[tuple[str, str, str], asyncio.Future[tuple]] = {}
        self.shared: OrderedDict[tuple[str, str, str], tuple] = OrderedDict()

    async def run(self, pipeline: AnalysisPipeline, in_flight: int) -> None:
        await self._warm_up(pipeline)
        self.tally.open_bar()
        writer = asyncio.create_task(self._write())
        slots = asyncio.Semaphore(in_flight)
        tasks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        files = walk(self.job.sources)
        try:
            while not self.stop.is_set():
                chunk = await loop.run_in_executor(self.read_pool, _take, files, WALK_CHUNK)
                if not chunk:
                    break
                for found in chunk:
                    await slots.acquire()
                    if self.stop.is_set():
                        slots.release()
                        break
                    task = asyncio.create_task(self._one(pipeline, found))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    task.add_done_callback(lambda _task: slots.release())
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await self.pending.put([])  # the writer's signal to finish
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self.read_pool.shutdown(wait=False, cancel_futures=True)
            self.write_pool.shutdown(wait=True)
        if self.failure is not None:
            raise self.failure

    async def _warm_up(self, pipeline: AnalysisPipeline) -> None:
        """Loads each type's model before the first file: one that cannot load ends the run
        at once, with one clear line."""
        for type_ in self.job.types:
            try:
                await pipeline.batcher(type_)
            except ModelUnavailableError as exc:
                raise RunError(f"type {type_}: {exc.status_message}") from None

    async def _one(self, pipeline: AnalysisPipeline, found: Found) -> None:
        loop = asyncio.get_running_loop()
        read: FileRead = await loop.run_in_executor(
            self.read_pool, read_file, found, self.settings.max_upload_bytes
        )
        missing = [
            type_
            for type_ in self.job.types
            if line_key(read.path, read.sha256, type_, self.job.params[type_]) not in self.results
        ]
        if read.problem is not None or not missing:
            answers = [(*error_status(read.problem), None)] * len(missing) if missing else []
        else:
            assert read.data is not None and read.sha256 is not None
            outcomes = await asyncio.gather(
                *(self._analyze(pipeline, read, type_) for type_ in missing),
                return_exceptions=True,
            )
            answers = []
            for type_, outcome in zip(list(missing), outcomes, strict=True):
                if isinstance(outcome, ModelUnavailableError):
                    self._fail(RunError(f"type {type_}: {outcome.status_message}"))
                    missing.remove(type_)  # left for the next run
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    answers.append(outcome)
        read.data = None
        lines = [
            make_line(read.path, read.sha256, type_, self.job.params[type_], *answer)
            for type_, answer in zip(missing, answers, strict=True)
        ]
        if lines or self.failure is None:
            self.tally.add(lines)
        if lines:
            await self.pending.put(lines)

    async def _analyze(
        self, pipeline: AnalysisPipeline, read: FileRead, type_: str
    ) -> tuple[int, str, dict[str, Any] | None]:
        """(status, message, data) of one type for one file; files with the same bytes
        share one analysis."""
        params = self.job.params[type_]
        assert read.sha256 is not None and read.data is not None
        key = (read.sha256, type_, json.dumps(params, sort_keys=True))
        if key in self.shared:
            return self.shared[key]
        running = self.analyses.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[tuple] = asyncio.get_running_loop().create_future()
        self.analyses[key] = future
        try:
            try:
                result = await pipeline.analyze(read.data, type_, params)
                answer: tuple = (*OK, result.data())
            except ModelUnavailableError:
                raise
            except Exception as exc:
                # A file the error table answers (not an image, too large) is no bug of ours.
                if api_error(exc) is None:
                    log.exception("analysing %s as %s failed", read.path, type_)
                answer = (*error_status(exc), None)
        except BaseException as exc:
            # Files waiting on this analysis get the same end.
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # marked retrieved; the waiters re-raise it
            else:
                future.cancel()
            raise
        finally:
            del self.analyses[key]
        future.set_result(answer)
        self.shared[key] = answer
        if len(self.shared) > SHARED_RESULTS:
            self.shared.popitem(last=False)
        return answer

    async def _write(self) -> None:
        """Appends every gathered group of lines in one write and one fsync."""
        loop = asyncio.get_running_loop()
        finishing = False
        while not finishing:
            group = [await self.pending.get()]
            while not self.pending.empty():
                group.append(self.pending.get_nowait())
            finishing = any(not lines for lines in group)
            lines = [line for lines in group for line in lines]
            if not lines:
                continue
            try:
                await loop.run_in_executor(self.write_pool, self.results.append, lines)
            except OSError as exc:
                self._fail(RunError(f"cannot write {self.results.path}: {exc.strerror or exc}"))
                return

    def _fail(self, failure: RunError) -> None:
        if self.failure is None:
            self.failure = failure
        self.stop.set()

    def interrupt(self) -> None:
        self.stop.set()


def _take(files: Any, count: int) -> list[Found]:
    chunk = []
    for found in files:
        chunk.append(found)
        if len(chunk) == count:
            break
    return chunk


async def run_local(job: Job, settings: Settings, results: ResultsFile, tally: Tally) -> bool:
    """Runs the job; False when it was interrupted (Ctrl-C, SIGTERM) before the end."""
    device = choose_device(settings.device)
    # celebrities match the operator's gallery, as the server's do.
    engine = await asyncio.to_thread(open_database, settings.resolved_database_url)
    pipeline = AnalysisPipeline(settings, device, gallery=Gallery(engine))
    run = LocalRun(job, settings, results, tally)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    interrupts = 0

    def on_signal() -> None:
        # First: stop taking files, finish and write those in progress. Second: stop now.
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            print(
                "\nstopping after the files in progress (again to stop at once)",
                file=sys.stderr,
            )
            run.interrupt()
        elif main is not None:
            main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        await run.run(pipeline, in_flight_limit(settings, device.type))
    except asyncio.CancelledError:
        return False
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        tally.close()
        await pipeline.close()
        engine.dispose()
    return interrupts == 0

