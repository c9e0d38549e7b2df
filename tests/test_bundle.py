"""What an image build and an air-gapped host do with the weights: `models fetch --all`
against a local HTTP server serving made-up files (digests pinned by a manifest of our own),
then `models pack` and `models unpack`, which refuses any archive it cannot verify whole and
then leaves nothing behind."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from models.weights.bundle import MANIFEST_NAME, BundleError, pack, unpack
from tests.conftest import run_cli

DETECTOR = b"made-up detector weights " * 4000
RECOGNISER = b"made-up recogniser weights " * 3000
PREFIXED = b"made-up torchvision-style weights " * 2000


@pytest.fixture
def weights_server(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Serves made-up files; returns the folder served and a manifest pinning their digests."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "detector.pth").write_bytes(DETECTOR)
    with zipfile.ZipFile(served / "recogniser.zip", "w") as bundle:
        bundle.writestr("recogniser.pth", RECOGNISER)
    prefix = hashlib.sha256(PREFIXED).hexdigest()[:8]
    (served / f"prefixed-{prefix}.pth").write_bytes(PREFIXED)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    manifest = {
        "detector": {
            "url": f"{base}/detector.pth",
            "filename": "detector.pth",
            "sha256": hashlib.sha256(DETECTOR).hexdigest(),
        },
        "recogniser": {
            "url": f"{base}/recogniser.zip",
            "filename": "recogniser.pth",
            "archive_member": "recogniser.pth",
            "md5": hashlib.md5(RECOGNISER, usedforsecurity=False).hexdigest(),
        },
        "prefixed": {
            "url": f"{base}/prefixed-{prefix}.pth",
            "filename": f"prefixed-{prefix}.pth",
            "sha256_prefix": prefix,
        },
        "unverifiable": {"url": f"{base}/detector.pth", "filename": "never.pth", "sha256": None},
    }
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_text(json.dumps(manifest))
    yield served, manifest_path
    server.shutdown()


@pytest.mark.slow
def test_fetch_all_checks_every_digest(weights_server, tmp_path: Path) -> None:
    served, manifest = weights_server
    data = tmp_path / "data"
    fetched = run_cli(data, "models", "fetch", "--all", "--manifest", str(manifest))
    assert fetched.returncode == 0, fetched.stderr
    models = data / "models"
    assert (models / "detector.pth").read_bytes() == DETECTOR
    assert (models / "recogniser.pth").read_bytes() == RECOGNISER
    assert len(list(models.glob("prefixed-*.pth"))) == 1
    assert "unverifiable: skipped" in fetched.stderr and not (models / "never.pth").exists()
    assert not list(models.glob("*.part"))

    # A file whose bytes changed on the server is refused and not stored.
    (models / "detector.pth").unlink()
    (served / "detector.pth").write_bytes(DETECTOR[:-1] + b"!")
    refused = run_cli(data, "models", "fetch", "--all", "--manifest", str(manifest))
    assert refused.returncode == 1 and "mismatch" in refused.stderr
    assert not (models / "detector.pth").exists() and not list(models.glob("*.part"))

    assert run_cli(data, "models", "fetch").returncode == 2  # neither names nor --all


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "source" / "models"
    (folder / "easyocr").mkdir(parents=True)
    (folder / "detector.pth").write_bytes(DETECTOR)
    (folder / "easyocr" / "recogniser.pth").write_bytes(RECOGNISER)
    (folder / "interrupted.pth.part").write_bytes(b"half")
    return folder


@pytest.mark.slow
def test_pack_and_unpack_through_the_cli(model_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "weights.tar"
    packed = run_cli(model_dir.parent, "models", "pack", str(archive))
    assert packed.returncode == 0, packed.stderr
    assert "2 files" in packed.stderr
    target = tmp_path / "airgapped" / "data"
    target.mkdir(parents=True)
    unpacked = run_cli(target, "models", "unpack", str(archive))
    assert unpacked.returncode == 0, unpacked.stderr
    assert (target / "models" / "detector.pth").read_bytes() == DETECTOR
    assert (target / "models" / "easyocr" / "recogniser.pth").read_bytes() == RECOGNISER
    assert not (target / "models" / "interrupted.pth.part").exists()
    assert sorted(p.name for p in target.iterdir()) == ["models"]  # no staging left

    # Into a folder that already holds other files: they are kept, bundled ones replaced.
    (target / "models" / "converted.pt").write_bytes(b"kept")
    (target / "models" / "detector.pth").write_bytes(b"stale")
    assert run_cli(target, "models", "unpack", str(archive)).returncode == 0
    assert (target / "models" / "converted.pt").read_bytes() == b"kept"
    assert (target / "models" / "detector.pth").read_bytes() == DETECTOR


def installed_nothing(target: Path) -> bool:
    return not target.exists() and list(target.parent.iterdir()) == []


@pytest.mark.slow
def test_corrupted_archive_is_refused(model_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "weights.tar"
    pack(model_dir, archive)
    raw = bytearray(archive.read_bytes())
    position = raw.index(DETECTOR[:40]) + 100  # inside a file's data: only a digest shows it
    raw[position] ^= 0xFF
    archive.write_bytes(bytes(raw))
    target = tmp_path / "host" / "models"
    target.parent.mkdir()
    with pytest.raises(BundleError, match="corrupted"):
        unpack(archive, target)
    assert installed_nothing(target)
    refused = run_cli(target.parent, "models", "unpack", str(archive))
    assert refused.returncode == 1 and "nothing was installed" in refused.stderr
    assert installed_nothing(target)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_archive_is_refused(model_dir: Path, tmp_path: Path, keep: float) -> None:
    archive = tmp_path / "weights.tar"
    pack(model_dir, archive)
    raw = archive.read_bytes()
    archive.write_bytes(raw[: int(len(raw) * keep)])
    target = tmp_path / "host" / "models"
    target.parent.mkdir()
    with pytest.raises(BundleError):
        unpack(archive, target)
    assert installed_nothing(target)


def archive_with(tmp_path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    files = {name: data for name, data in (m for m in members if isinstance(m, tuple))}
    manifest = {
        "format": 1,
        "files": {
            name.removeprefix("models/"): {
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            for name, data in files.items()
        },
    }
    archive = tmp_path / "crafted.tar"
    with tarfile.open(archive, "w") as tar:
        for member in [(MANIFEST_NAME, json.dumps(manifest).encode()), *members]:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
                continue
            info = tarfile.TarInfo(member[0])
            info.size = len(member[1])
            tar.addfile(info, io.BytesIO(member[1]))
    return archive


def symlink(name: str, to: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, to
    return info


@pytest.mark.parametrize(
    "members",
    [
        [("models/../../escaped.pth", b"x")],
        [("/tmp/absolute.pth", b"x")],
        [("elsewhere/file.pth", b"x")],
        [symlink("models/link.pth", "/etc/passwd")],
        [("models/a.pth", b"x"), ("models/a.pth", b"y")],
    ],
    ids=["dot-dot", "absolute", "outside-models", "symlink", "twice"],
)
def test_unsafe_archives_are_refused(tmp_path: Path, members: list) -> None:
    archive = archive_with(tmp_path, members)
    target = tmp_path / "host" / "models"
    target.parent.mkdir()
    with pytest.raises(BundleError):
        unpack(archive, target)
    assert installed_nothing(target)
    assert not (tmp_path / "escaped.pth").exists()


def test_archive_with_unlisted_files_is_refused(tmp_path: Path) -> None:
    archive = archive_with(tmp_path, [("models/a.pth", b"x")])
    with tarfile.open(archive, "a") as tar:
        info = tarfile.TarInfo("models/smuggled.pth")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"z"))
    target = tmp_path / "host" / "models"
    target.parent.mkdir()
    with pytest.raises(BundleError, match="does not list"):
        unpack(archive, target)
    assert installed_nothing(target)
