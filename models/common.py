"""Helpers shared by several models: finding packaged weights, hashing and converting weight
files, the API's box and confidence shapes, and TensorFlow's "SAME" convolution."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import logging
import math
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (some packages that
    carry weights fail to import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def package_version(distribution: str) -> str:
    """An installed distribution's version, looked up once (the lookup reads site-packages:
    too slow for every request)."""
    return importlib.metadata.version(distribution)


def confidence(probability: float) -> float:
    """A 0..1 probability on the API's 0..100 scale with two decimals."""
    return round(float(probability) * 100.0, 2)


def box_dict(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> dict:
    """A box in the API's shape, clamped to the image."""
    left = min(max(round(x1), 0), width)
    top = min(max(round(y1), 0), height)
    right = min(max(round(x2), 0), width)
    bottom = min(max(round(y2), 0), height)
    return {"left": left, "top": top, "width": right - left, "height": bottom - top}


def hash_file(path: Path, *hashes: Any) -> None:
    """Feeds the file to every hash object in one read."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            for digest in hashes:
                digest.update(block)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    hash_file(path, digest)
    return digest.hexdigest()


@contextlib.contextmanager
def conversion_lock(target: Path) -> Iterator[None]:
    """Holds ``target``'s conversion to one process at a time (an advisory lock file beside
    it): servers started together on one model folder convert once, and the others read what
    it wrote, never a file being written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f"{target.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cached_conversion(
    source: Path, target: Path, convert: Callable[[Path], dict[str, Any]]
) -> dict[str, Any]:
    """``convert(source)``, kept in ``target`` and reused while the source file's sha256 is
    the one it was converted from."""
    source_hash = sha256_of(source)
    with conversion_lock(target):
        if target.is_file():
            saved = torch.load(target, map_location="cpu", weights_only=True)
            if saved.get("source_sha256") == source_hash:
                return saved
            log.info("%s was converted from another file: converting again", target)
        started = time.perf_counter()
        converted = dict(convert(source), source_sha256=source_hash)
        partial = target.with_suffix(".tmp")
        torch.save(converted, partial)
        partial.replace(target)  # atomic: a reader without the lock never sees half a file
        log.info(
            "converted %s into %s in %.1f s (once: later loads read it)",
            source.name, target, time.perf_counter() - started,
        )
        return converted


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding, computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(
            reversed(x.shape[2:]),
            reversed(self.kernel_size),
            reversed(self.stride),
            strict=True,
        ):
            out = math.ceil(size / stride)
            total = max((out - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
