"""Fetching the design card's weights on a machine with internet: download from the official
URL, check the sha256 from the manifest in the repository, store in the model folder.

The manifest (`weights_manifest.json`) gives each file's full `sha256` where it is known, or
the `sha256_prefix` its publisher embeds in the file name (torchvision's convention, and all
that torchvision itself checks). Nothing is stored unless the digest matches.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MANIFEST_PATH = Path(__file__).with_name("weights_manifest.json")
CHUNK_BYTES = 1 << 20


class FetchError(Exception):
    """A download that failed or did not match its manifest entry; nothing was stored."""


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    url: str
    filename: str
    description: str = ""
    sha256: str | None = None
    sha256_prefix: str | None = None

    def matches(self, digest: str) -> bool:
        if self.sha256:
            return digest == self.sha256.lower()
        if self.sha256_prefix:
            return digest.startswith(self.sha256_prefix.lower())
        return False  # an entry without a digest is never trusted


@lru_cache(maxsize=4)
def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, ManifestEntry]:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return {name: ManifestEntry(name=name, **fields) for name, fields in raw.items()}


def manifest_entry(name: str) -> ManifestEntry:
    manifest = load_manifest()
    if name not in manifest:
        raise KeyError(f"no weights named {name!r}; known: {', '.join(sorted(manifest))}")
    return manifest[name]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    entry: ManifestEntry,
    model_dir: Path,
    progress: Callable[[int, int | None], None] | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """Downloads ``entry`` into ``model_dir`` unless a verified copy is already there."""
    target = model_dir / entry.filename
    if target.is_file() and entry.matches(sha256_of(target)):
        return target
    model_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(entry.url, timeout=timeout_s) as response:
            total = response.headers.get("Content-Length")
            size = int(total) if total and total.isdigit() else None
            with open(partial, "wb") as out:
                while block := response.read(CHUNK_BYTES):
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    if progress is not None:
                        progress(received, size)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise FetchError(f"{entry.name}: download from {entry.url} failed: {exc}") from exc
    found = digest.hexdigest()
    if not entry.matches(found):
        partial.unlink(missing_ok=True)
        expected = entry.sha256 or f"{entry.sha256_prefix}…"
        raise FetchError(
            f"{entry.name}: sha256 mismatch (expected {expected}, got {found}); not stored"
        )
    partial.replace(target)
    return target
