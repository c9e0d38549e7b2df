"""An offline bundle of the model folder for hosts without internet: a tar archive holding
the folder's files under `models/` and, first, a manifest of their sizes and sha256 digests.

Unpacking extracts into a temporary folder beside the model folder (the same file system, so
that installing is a rename), checks that the archive holds exactly the files of its manifest
with their digests, and only then moves them into place. A corrupted or truncated archive, or
one naming paths outside the folder, links or devices, is refused and leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from models.common import sha256_of
from models.weights.fetch import CHUNK_BYTES

MANIFEST_NAME = "imagerecognize-bundle.json"
FILES_FOLDER = "models"
BUNDLE_FORMAT = 1
# Left behind by an interrupted fetch or pack: never part of a bundle.
PARTIAL_SUFFIXES = (".part",)


class BundleError(Exception):
    """An archive that cannot be trusted or read; nothing was installed."""


def bundled_files(model_dir: Path) -> list[Path]:
    """The model folder's regular files, relative to it, in a stable order."""
    return sorted(
        path.relative_to(model_dir)
        for path in model_dir.rglob("*")
        if path.is_file() and not path.is_symlink() and not path.name.endswith(PARTIAL_SUFFIXES)
    )


def pack(model_dir: Path, archive: Path) -> dict[str, Any]:
    """Writes ``archive`` from ``model_dir`` and returns its manifest. Uncompressed: weights
    hardly compress, and gzip would cost minutes on a large folder."""
    if not model_dir.is_dir():
        raise BundleError(f"{model_dir} is not a folder")
    files = bundled_files(model_dir)
    if not files:
        raise BundleError(f"{model_dir} holds no files")
    manifest = {
        "format": BUNDLE_FORMAT,
        "files": {
            rel.as_posix(): {
                "size": (model_dir / rel).stat().st_size,
                "sha256": sha256_of(model_dir / rel),
            }
            for rel in files
        },
    }
    encoded = json.dumps(manifest, indent=2, sort_keys=True).encode()
    partial = archive.with_name(archive.name + ".part")
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size = len(encoded)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(encoded))
            for rel in files:
                arcname = f"{FILES_FOLDER}/{rel.as_posix()}"
                tar.add(model_dir / rel, arcname=arcname, recursive=False)
        partial.replace(archive)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return manifest


def _member_path(member: tarfile.TarInfo) -> PurePosixPath:
    """The member's path inside the bundle, refused unless it is a plain file that stays
    inside it."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or "\\" in member.name:
        raise BundleError(f"{member.name!r}: a path outside the model folder")
    if member.isdir():
        return path
    if not member.isfile():
        raise BundleError(f"{member.name!r}: not a plain file (links and devices are refused)")
    if path.as_posix() != MANIFEST_NAME and (path.parts[0] != FILES_FOLDER or len(path.parts) < 2):
        raise BundleError(f"{member.name!r}: not a file of an imagerecognize bundle")
    return path


def _extract(archive: Path, staging: Path) -> None:
    seen: set[str] = set()
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            path = _member_path(member)
            if member.isdir():
                continue
            if path.as_posix() in seen:
                raise BundleError(f"{member.name!r} appears twice")
            seen.add(path.as_posix())
            target = staging.joinpath(*path.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None  # a plain file
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK_BYTES)


def _verify(staging: Path) -> dict[str, Any]:
    manifest_path = staging / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"no {MANIFEST_NAME} in the archive")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        listed: dict[str, dict[str, Any]] = manifest["files"]
        if manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"bundle format {manifest.get('format')!r} is not supported")
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{MANIFEST_NAME} is not a bundle manifest: {exc}") from exc
    folder = staging / FILES_FOLDER
    present = {rel.as_posix() for rel in bundled_files(folder)} if folder.is_dir() else set()
    if missing := sorted(set(listed) - present):
        raise BundleError(f"the archive lacks {', '.join(missing)} (truncated?)")
    if extra := sorted(present - set(listed)):
        raise BundleError(f"the archive holds files its manifest does not list: {extra}")
    for name, expected in listed.items():
        path = folder / name
        if path.stat().st_size != expected["size"]:
            raise BundleError(
                f"{name}: {path.stat().st_size} bytes, the manifest says "
                f"{expected['size']} (truncated?)"
            )
        if sha256_of(path) != expected["sha256"]:
            raise BundleError(f"{name}: sha256 differs from the manifest (corrupted)")
    return manifest


def unpack(archive: Path, model_dir: Path) -> dict[str, Any]:
    """Verifies ``archive`` whole, then installs its files into ``model_dir`` (replacing files
    of the same name, keeping others). Returns its manifest."""
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=model_dir.parent))
    try:
        try:
            _extract(archive, staging)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BundleError(f"{archive} cannot be read (corrupted or truncated?): {exc}") from exc
        manifest = _verify(staging)
        folder = staging / FILES_FOLDER
        if not model_dir.exists():
            os.rename(folder, model_dir)
        else:
            for name in manifest["files"]:
                target = model_dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(folder / name, target)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)
