"""`imagerecognize analyze`: the run of one job on the chosen engine, its summary line and
its exit status (0: every file analysed or reported; 1: the run failed; 130: interrupted)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from server.collection.files import Job, ResultsFile, RunError, Tally, count_files
from server.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def offline_settings(settings: Settings) -> Settings:
    """No request deadline offline (a slow model is waited for, not answered 503), and model
    queues long enough for every file in flight."""
    return settings.model_copy(
        update={
            "request_timeout_s": 365 * 24 * 3600.0,
            "queue_size": max(settings.queue_size, 1024),
        }
    )


def run_analyze(
    job: Job,
    settings: Settings,
    engine: str = "local",
    ray_address: str | None = None,
    progress: bool | None = None,
) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = offline_settings(settings)
    tally = Tally()
    results: ResultsFile | None = None
    completed = False
    try:
        results = ResultsFile(job.out)
        if results.repaired:
            print(
                f"repaired {job.out}: cut a torn last line of {results.repaired} bytes",
                file=sys.stderr,
            )
        show = sys.stderr.isatty() if progress is None else progress
        tally.show = show
        if show:
            tally.total = count_files(job.sources)  # for the bar's ETA; the walk is cheap
        if engine == "ray":
            from server.collection.ray_engine import run_ray

            completed = run_ray(job, settings, results, tally, ray_address, show)
        else:
            from server.collection.local_engine import run_local

            completed = asyncio.run(run_local(job, settings, results, tally))
    except RunError as exc:
        tally.close()
        print(f"error: {exc}", file=sys.stderr)
        if results is not None:
            print(tally.summary(" (run failed)"), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        completed = False
    finally:
        if results is not None:
            results.close()
    print(tally.summary("" if completed else " (interrupted)"), file=sys.stderr)
    return EXIT_OK if completed else EXIT_INTERRUPTED


def job_from(
    sources: list[str], types: list[str], params: dict[str, dict[str, int]], out: str
) -> Job:
    return Job(tuple(sources), tuple(dict.fromkeys(types)), params, Path(out))
