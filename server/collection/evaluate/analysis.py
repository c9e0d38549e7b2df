"""The analysis behind an evaluation: `imagerecognize analyze`'s local engine and resumable
results file, run with the lowest thresholds so that the sweep sees every score. An image
whose line (path, sha256, type, parameters) is in the results file already is not analysed
again; when every image has its line no model is even loaded."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.collection.analyze import offline_settings
from server.collection.evaluate.layouts import Dataset
from server.collection.files import (
    Found,
    Job,
    ResultsFile,
    RunError,
    Tally,
    key_of,
    line_key,
    read_file,
)
from server.errors import ErrorKind
from server.settings import Settings

# Every label the models give, however unsure: the sweep chooses the threshold afterwards.
EVALUATION_PARAMS: dict[str, dict[str, int]] = {
    "objects": {"max_labels": 1000, "min_confidence": 0},
    "nsfw": {"nsfw_min_confidence": 0},
}


class InterruptedRunError(Exception):
    """Ctrl-C or SIGTERM during the analysis; what was analysed is kept."""


@dataclass
class Analysed:
    lines: dict[str, dict[str, Any]]  # path -> its line of the results file
    analysed: int  # images analysed by this run
    reused: int  # images whose line was there already
    results_path: Path


def results_file_name(type_: str, model: str, extra: str = "") -> str:
    """One results file per type and model (and, for celebrities, gallery state and match
    threshold): a model switch or gallery change starts a new file instead of mixing."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{type_}-{model}{extra}")
    return f"{safe}.jsonl"


def hash_samples(dataset: Dataset, max_bytes: int) -> dict[str, str]:
    """path -> sha256 of every sample that can be read; the others become Skipped lines."""
    hashes: dict[str, str] = {}
    kept = []
    for sample in dataset.samples:
        read = read_file(Found(sample.path), max_bytes)
        read.data = None
        if read.problem is not None:
            reason = read.problem.status_message
            if read.problem.kind is ErrorKind.IMAGE_TOO_LARGE:
                reason += f" (over IMAGERECOGNIZE_MAX_UPLOAD_BYTES={max_bytes})"
            dataset.skip(sample.path, reason)
            continue
        assert read.sha256 is not None
        hashes[sample.path] = read.sha256
        kept.append(sample)
    dataset.samples = kept
    return hashes


def analyse(
    dataset: Dataset,
    settings: Settings,
    results_path: Path,
    progress: bool | None = None,
) -> Analysed:
    """Analyses the samples not in the results file yet; every sample's line. Raises
    RunError (the run cannot go on) or InterruptedRunError."""
    from server.collection.local_engine import run_local

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    type_ = dataset.type
    params = EVALUATION_PARAMS.get(type_, {})
    hashes = hash_samples(dataset, settings.max_upload_bytes)
    keys = {line_key(path, sha, type_, params): path for path, sha in hashes.items()}
    results = ResultsFile(results_path)
    try:
        if results.repaired:
            print(
                f"repaired {results_path}: cut a torn last line of {results.repaired} bytes",
                file=sys.stderr,
            )
        missing = [path for key, path in keys.items() if key not in results]
        reused = len(keys) - len(missing)
        analysed = 0
        if missing:
            job = Job(tuple(missing), (type_,), {type_: params}, results_path)
            tally = Tally(show=sys.stderr.isatty() if progress is None else progress)
            tally.total = len(missing)
            completed = asyncio.run(run_local(job, offline_settings(settings), results, tally))
            analysed = tally.files
            if not completed:
                raise InterruptedRunError(f"interrupted after {analysed} of {len(missing)} images")
    finally:
        results.close()
    lines = _read_lines(results_path, keys)
    return Analysed(lines, analysed, reused, results_path)


def _read_lines(path: Path, keys: dict[int, str]) -> dict[str, dict[str, Any]]:
    lines: dict[str, dict[str, Any]] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for raw in handle:
                try:
                    line = json.loads(raw)
                    key = key_of(line)
                except (ValueError, KeyError, TypeError):
                    continue
                if key in keys:
                    lines[keys[key]] = line
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None
    return lines
