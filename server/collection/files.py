"""Offline analysis of a collection of files (`imagerecognize analyze`): what both engines
share. The walk over the sources, the reading of one file, the results file (JSON Lines,
resumable, repaired after a crash) and the tally (progress bar and summary line).

A line is keyed by (path, sha256, type, parameters): a run adds only lines whose key is not
in the file yet. Statuses come from the API's error table (server.errors)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import stat
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.catalog import API_TYPES, TYPE_PARAMETERS
from server.errors import ApiError, ErrorKind, api_error

READ_CHUNK = 1 << 20
OK = (200, "OK")


class RunError(Exception):
    """The run itself cannot go on (output not writable, a model that cannot load); the
    message is the one line shown to the user."""


class UsageError(Exception):
    """Bad command-line arguments (exit status 2)."""


@dataclass(frozen=True)
class Job:
    sources: tuple[str, ...]
    types: tuple[str, ...]
    params: dict[str, dict[str, int]]  # per type, the API's parameters of that type
    out: Path


def type_parameters(types: Iterable[str], values: dict[str, int | None]) -> dict[str, dict]:
    """Each type's parameters under the API's rules (server/catalog.py): a
    required one missing or out of range is a usage error, named as the API names it."""
    params: dict[str, dict[str, int]] = {}
    problems: list[str] = []
    for type_ in types:
        if type_ not in API_TYPES:
            problems.append(f"unknown type {type_!r}")
            continue
        params[type_] = {}
        for name, rule in TYPE_PARAMETERS.get(type_, {}).items():
            value = values.get(name)
            option = "--" + name.replace("_", "-")
            if value is None:
                if rule.required:
                    problems.append(f"{option} is required with --type {type_}")
                continue
            if not rule.accepts(value):
                problems.append(f"{option} must be {rule.describe()}")
                continue
            params[type_][name] = value
    if problems:
        raise UsageError("; ".join(dict.fromkeys(problems)))
    return params


# --- the walk ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """A path met by the walk; ``problem`` when it cannot be read as a file at all."""

    path: str
    problem: ApiError | None = None


def unreadable(exc: OSError) -> ApiError:
    return ApiError(ErrorKind.INVALID_FILE, f"cannot read ({exc.strerror or type(exc).__name__})")


def walk(sources: Iterable[str]) -> Iterator[Found]:
    """Every file under the sources, in a stable order (sources as given, each folder's
    entries by name), as absolute paths. Symlinks are followed; a link back to a folder being
    walked is reported as a loop, an unreadable folder or file as unreadable; neither stops
    the walk."""
    for source in sources:
        path = os.path.abspath(source)
        try:
            st = os.stat(path)
        except OSError as exc:
            yield Found(path, unreadable(exc))
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_folder(path, frozenset({(st.st_dev, st.st_ino)}))
        else:
            yield Found(path)


def _walk_folder(folder: str, ancestors: frozenset[tuple[int, int]]) -> Iterator[Found]:
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as exc:
        yield Found(folder, unreadable(exc))
        return
    for entry in entries:
        try:
            is_folder = entry.is_dir(follow_symlinks=True)
            if is_folder:
                st = entry.stat(follow_symlinks=True)
        except OSError as exc:
            yield Found(entry.path, unreadable(exc))
            continue
        if not is_folder:
            yield Found(entry.path)  # unreadable or not a file: found out when read
            continue
        identity = (st.st_dev, st.st_ino)
        if identity in ancestors:
            yield Found(entry.path, ApiError(ErrorKind.INVALID_FILE, "symlink loop"))
            continue
        yield from _walk_folder(entry.path, ancestors | {identity})


def count_files(sources: Iterable[str]) -> int:
    return sum(1 for _ in walk(sources))


@dataclass
class FileRead:
    path: str
    sha256: str | None = None
    data: bytes | None = None
    problem: ApiError | None = None


def read_file(found: Found, max_bytes: int) -> FileRead:
    """The file's bytes and sha256. A file over ``max_bytes`` is hashed in chunks, never
    held, and gets 413 as the API gives it; a FIFO or device is never read (it may block)."""
    if found.problem is not None:
        return FileRead(found.path, problem=found.problem)
    try:
        fd = os.open(found.path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return FileRead(found.path, problem=unreadable(exc))
    try:
        with os.fdopen(fd, "rb", buffering=0) as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return FileRead(
                    found.path, problem=ApiError(ErrorKind.INVALID_FILE, "not a regular file")
                )
            digest = hashlib.sha256()
            buffer = io.BytesIO()
            size = 0
            while chunk := handle.read(READ_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if size <= max_bytes:
                    buffer.write(chunk)
                elif buffer.tell():
                    buffer = io.BytesIO()  # too large: keep hashing, hold nothing
        if size > max_bytes:
            return FileRead(
                found.path, digest.hexdigest(), problem=ApiError(ErrorKind.IMAGE_TOO_LARGE)
            )
        return FileRead(found.path, digest.hexdigest(), buffer.getvalue())
    except OSError as exc:
        return FileRead(found.path, problem=unreadable(exc))


# --- lines and the results file ---------------------------------------------------------


def line_key(path: str, sha256: str | None, type_: str, params: dict[str, Any]) -> int:
    """A 64-bit digest of a line's identity: a million lines' keys fit in a few dozen MB."""
    identity = json.dumps([path, sha256, type_, params], sort_keys=True)
    return int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=8).digest(), "big")


def make_line(
    path: str,
    sha256: str | None,
    type_: str,
    params: dict[str, Any],
    status: int,
    message: str,
    data: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "path": path,
        "sha256": sha256,
        "type": type_,
        "params": params,
        "status": status,
        "status_message": message,
        "data": data,
    }


def error_status(exc: BaseException) -> tuple[int, str]:
    """(status, message) of an error that belongs to one image, from the error table."""
    error = api_error(exc) if isinstance(exc, Exception) else None
    if error is not None:
        return error.status, error.status_message
    return ErrorKind.INTERNAL.status, ErrorKind.INTERNAL.message


def key_of(line: dict[str, Any]) -> int:
    return line_key(line["path"], line["sha256"], line["type"], line["params"])


class ResultsFile:
    """The output: one JSON line per (file, type), appended and fsynced in groups.

    Opening it repairs a torn last line (a run killed while writing) and reads the keys of
    the lines already there. An exclusive lock keeps two runs off one file."""

    def __init__(self, path: Path):
        self.path = path
        self.keys: set[int] = set()
        self.repaired = 0  # bytes of a torn last line cut off
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise RunError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise RunError(f"{path} is being written by another run") from None
        try:
            self._load()
        except OSError as exc:
            os.close(self.fd)
            raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _load(self) -> None:
        size = os.fstat(self.fd).st_size
        kept = 0
        with os.fdopen(os.dup(self.fd), "rb") as handle:
            handle.seek(0)
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # the torn last line
                kept += len(raw)
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self.keys.add(key_of(json.loads(raw)))
        if kept < size:
            os.ftruncate(self.fd, kept)
            os.fsync(self.fd)
            self.repaired = size - kept

    def __contains__(self, key: int) -> bool:
        return key in self.keys

    def append(self, lines: list[dict[str, Any]]) -> int:
        """Writes the lines not in the file yet, each whole, then fsyncs; returns how many."""
        fresh = []
        for line in lines:
            key = key_of(line)
            if key not in self.keys:
                self.keys.add(key)
                fresh.append(line)
        if not fresh:
            return 0
        payload = "".join(json.dumps(line) + "\n" for line in fresh).encode()
        view = memoryview(payload)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        os.fsync(self.fd)
        return len(fresh)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


# --- progress and summary ----------------------------------------------------------------


@dataclass
class Tally:
    """Counts of the run, a progress bar on stderr when it is a terminal, and the summary."""

    total: int | None = None
    statuses: Counter[int] = field(default_factory=Counter)
    files: int = 0  # files with at least one new line
    skipped: int = 0  # files whose every line was there already
    failed: int = 0  # files with at least one line other than 200
    started: float = field(default_factory=time.perf_counter)
    working_since: float | None = None  # models loaded, first file taken
    bar: Any = None
    show: bool | None = None  # the bar; default: when stderr is a terminal
    nodes: int | None = None  # Ray nodes that did part of the work

    def open_bar(self) -> None:
        from tqdm import tqdm

        show = sys.stderr.isatty() if self.show is None else self.show
        self.working_since = time.perf_counter()
        self.bar = tqdm(
            total=self.total,
            unit="file",
            file=sys.stderr,
            disable=not show,
            dynamic_ncols=True,
            smoothing=0.1,
        )

    def describe(self, stage: str | None) -> None:
        """What the run is doing before its files come back (e.g. loading models), beside
        the bar; None clears it."""
        if self.bar is not None:
            self.bar.set_description_str(stage or "", refresh=True)

    def add(self, lines: list[dict[str, Any]]) -> None:
        if not lines:
            self.skipped += 1
        else:
            self.files += 1
            for line in lines:
                self.statuses[line["status"]] += 1
            if any(line["status"] != 200 for line in lines):
                self.failed += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(failed=self.failed, refresh=False)

    def summary(self, note: str = "") -> str:
        now = time.perf_counter()
        elapsed = now - self.started
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items())) or "none"
        # The rate counts from the first file on, after the models have loaded.
        working = now - (self.working_since or self.started)
        rate = self.files / working if working > 0 else 0.0
        return (
            f"analyze: {self.files} files analysed, {self.skipped} already done; "
            f"lines by status {statuses}; {elapsed:.1f} s, {rate:.1f} images/s"
            + (f"; work on {self.nodes} Ray nodes" if self.nodes else "")
            + note
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
