"""Fetching the weights of the fetched models (docs/models.md) on a machine with internet:
download from the official URL, check the digest from the manifest in the repository, store
in the model folder.

The manifest (`weights_manifest.json`) gives each file's full `sha256` where it is known, or
the `sha256_prefix` its publisher embeds in the file name (torchvision's convention, and all
that torchvision itself checks), or the `md5` its publisher checks (EasyOCR's). Where the
publisher ships a zip, `archive_member` names the file taken out of it, and the digests are
those of that file: always of what is stored and loaded. Nothing is stored unless the digest
matches.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from models.common import CHUNK_BYTES, hash_file

MANIFEST_PATH = Path(__file__).with_name("weights_manifest.json")


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
    md5: str | None = None
    archive_member: str | None = None  # the file to take out of a zip download

    def has_digest(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix or self.md5)

    def expected(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.sha256_prefix:
            return f"sha256 {self.sha256_prefix}…"
        return f"md5 {self.md5}"

    def matches(self, digests: Digests) -> bool:
        if self.sha256:
            return digests.sha256 == self.sha256.lower()
        if self.sha256_prefix:
            return digests.sha256.startswith(self.sha256_prefix.lower())
        if self.md5:
            return digests.md5 == self.md5.lower()
        return False  # an entry without a digest is never trusted


@dataclass(frozen=True)
class Digests:
    sha256: str
    md5: str


@lru_cache(maxsize=4)
def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, ManifestEntry]:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return {name: ManifestEntry(name=name, **fields) for name, fields in raw.items()}


def manifest_entry(name: str) -> ManifestEntry:
    manifest = load_manifest()
    if name not in manifest:
        raise KeyError(f"no weights named {name!r}; known: {', '.join(sorted(manifest))}")
    return manifest[name]


def digests_of(path: Path) -> Digests:
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    hash_file(path, sha256, md5)
    return Digests(sha256.hexdigest(), md5.hexdigest())


def _download(
    entry: ManifestEntry,
    into: Path,
    progress: Callable[[int, int | None], None] | None,
    timeout_s: float,
) -> None:
    received = 0
    try:
        with urllib.request.urlopen(entry.url, timeout=timeout_s) as response:
            total = response.headers.get("Content-Length")
            size = int(total) if total and total.isdigit() else None
            with open(into, "wb") as out:
                while block := response.read(CHUNK_BYTES):
                    out.write(block)
                    received += len(block)
                    if progress is not None:
                        progress(received, size)
    except OSError as exc:
        into.unlink(missing_ok=True)
        raise FetchError(f"{entry.name}: download from {entry.url} failed: {exc}") from exc


def _extract(entry: ManifestEntry, archive: Path, into: Path) -> None:
    assert entry.archive_member is not None
    try:
        with (
            zipfile.ZipFile(archive) as bundle,
            bundle.open(entry.archive_member) as member,
            open(into, "wb") as out,
        ):
            while block := member.read(CHUNK_BYTES):
                out.write(block)
    except (zipfile.BadZipFile, KeyError) as exc:
        into.unlink(missing_ok=True)
        raise FetchError(
            f"{entry.name}: {entry.url} is not a zip holding {entry.archive_member}: {exc}"
        ) from exc
    finally:
        archive.unlink(missing_ok=True)


def fetch(
    entry: ManifestEntry,
    model_dir: Path,
    progress: Callable[[int, int | None], None] | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """Downloads ``entry`` into ``model_dir`` unless a verified copy is already there."""
    target = model_dir / entry.filename
    if target.is_file() and entry.matches(digests_of(target)):
        return target
    model_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    if entry.archive_member:
        archive = target.with_name(target.name + ".zip.part")
        _download(entry, archive, progress, timeout_s)
        _extract(entry, archive, partial)
    else:
        _download(entry, partial, progress, timeout_s)
    found = digests_of(partial)
    if not entry.matches(found):
        partial.unlink(missing_ok=True)
        kind = entry.expected().split()[0]
        raise FetchError(
            f"{entry.name}: {kind} mismatch (expected {entry.expected()}, got sha256 "
            f"{found.sha256}, md5 {found.md5}); not stored"
        )
    partial.replace(target)
    return target
