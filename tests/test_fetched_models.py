"""Fetched weights: `models fetch` checks the sha256 of what it downloads, and the fetched
Faster R-CNN loads a state dict of the official format from the model folder."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from models.faster_rcnn import FasterRcnnDetector
from models.fetch import FetchError, ManifestEntry, fetch
from server.app import create_app
from server.keys import KeyStore
from tests.conftest import encode, make_settings


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a folder: (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


def test_fetch_stores_a_verified_file(file_server, tmp_path: Path) -> None:
    base, folder = file_server
    payload = b"weights " * 100_000
    (folder / "w.pth").write_bytes(payload)
    entry = ManifestEntry("w", f"{base}/w.pth", "w.pth", sha256=hashlib.sha256(payload).hexdigest())
    seen = []
    stored = fetch(entry, tmp_path / "models", lambda done, total: seen.append((done, total)))
    assert stored.read_bytes() == payload and seen[-1] == (len(payload), len(payload))
    # Present and verified: not downloaded again.
    (folder / "w.pth").unlink()
    assert fetch(entry, tmp_path / "models") == stored


def test_fetch_refuses_a_corrupted_download(file_server, tmp_path: Path) -> None:
    base, folder = file_server
    (folder / "w.pth").write_bytes(b"tampered bytes")
    expected = hashlib.sha256(b"the real weights").hexdigest()
    entry = ManifestEntry("w", f"{base}/w.pth", "w.pth", sha256=expected)
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch(entry, tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []  # nothing stored, no partial file
    prefix_entry = ManifestEntry("w", f"{base}/w.pth", "w.pth", sha256_prefix="dd69338a")
    with pytest.raises(FetchError):
        fetch(prefix_entry, tmp_path / "models")
    with pytest.raises(FetchError, match=r"download .* failed"):
        fetch(
            ManifestEntry("w", f"{base}/missing.pth", "w.pth", sha256=expected), tmp_path / "models"
        )


def test_fetched_faster_rcnn_answers_through_the_api(
    tmp_path: Path, astronaut: Image.Image
) -> None:
    from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2

    settings = make_settings(tmp_path / "data")
    model_dir = settings.resolved_model_dir
    model_dir.mkdir(parents=True)
    # The official file's format: a plain state dict of the same architecture.
    torch.manual_seed(0)
    made_up = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91)
    torch.save(made_up.state_dict(), FasterRcnnDetector.weights_file(model_dir))
    with TestClient(create_app(settings)) as client:
        key = KeyStore(client.app.state.service.keys.engine).create("frcnn")
        response = client.post(
            "/api/v2/",
            data={"apikey": key, "type": "objects", "max_labels": "20", "min_confidence": "1"},
            files={"file": encode(astronaut.resize((320, 320)))},
        )
    body = response.json()
    assert response.status_code == body["status"] == 200, body
    assert body["data"]["model"]["name"] == "faster_rcnn_resnet50_fpn_v2"
    labels = body["data"]["objects"]
    assert len(labels) <= 20
    assert all(label["confidence"] >= 1 for label in labels)
    # The packaged classifier still names the whole image.
    assert any(label["instances"] == [] for label in labels)
