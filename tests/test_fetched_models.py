"""Fetched weights: `models fetch` checks the digest of what it downloads (and takes it out
of the publisher's zip), and the fetched models (Faster R-CNN, EasyOCR) load files of the
official format from the model folder."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from models.detect_text.easyocr_reader import EasyOcrTextReader
from models.objects.faster_rcnn import FasterRcnnDetector
from models.weights.fetch import FetchError, ManifestEntry, fetch
from server.http.app import create_app
from server.store.keys import KeyStore
from tests.conftest import app_state, encode, make_settings

pytestmark = pytest.mark.slow  # real models or live servers


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
        key = KeyStore(app_state(client).keys.engine).create("frcnn")
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


def test_fetch_takes_the_file_out_of_a_zip_and_checks_its_md5(file_server, tmp_path: Path) -> None:
    base, folder = file_server
    payload = b"craft weights " * 50_000
    with zipfile.ZipFile(folder / "craft.zip", "w") as bundle:
        bundle.writestr("craft.pth", payload)
    entry = ManifestEntry(
        "craft",
        f"{base}/craft.zip",
        "craft.pth",
        md5=hashlib.md5(payload).hexdigest(),
        archive_member="craft.pth",
    )
    stored = fetch(entry, tmp_path / "models")
    assert stored.read_bytes() == payload
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["craft.pth"]
    # A zip whose file differs from the publisher's md5 leaves nothing behind.
    stored.unlink()
    wrong = dataclasses.replace(entry, md5=hashlib.md5(b"other").hexdigest())
    with pytest.raises(FetchError, match="md5 mismatch"):
        fetch(wrong, tmp_path / "models")
    missing = dataclasses.replace(entry, archive_member="english.pth")
    with pytest.raises(FetchError, match=r"not a zip holding english\.pth"):
        fetch(missing, tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


def make_easyocr_weights(model_dir: Path) -> None:
    """Files in the format of EasyOCR's own (DataParallel state dicts), with made-up values
    chosen so that the whole picture is one text region read as "A": random values alone find
    no text, and this way every stage runs."""
    from easyocr.config import recognition_models
    from easyocr.craft import CRAFT
    from easyocr.model.vgg_model import Model

    torch.manual_seed(0)
    detector = CRAFT()
    with torch.no_grad():
        detector.conv_cls[-1].weight.zero_()
        detector.conv_cls[-1].bias.fill_(1.0)  # text and link scores above every threshold
    characters = recognition_models["gen2"]["english_g2"]["characters"]
    recogniser = Model(
        num_class=len(characters) + 1, input_channel=1, output_channel=256, hidden_size=256
    )
    with torch.no_grad():
        recogniser.Prediction.weight.zero_()
        recogniser.Prediction.bias.zero_()
        recogniser.Prediction.bias[1 + characters.index("A")] = 10.0  # class 0 is CTC's blank
    for network, path in zip(
        (detector, recogniser), EasyOcrTextReader.weights_files(model_dir), strict=True
    ):
        torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, path)


def test_fetched_easyocr_answers_through_the_api(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", text_model="easyocr")
    model_dir = settings.resolved_model_dir
    model_dir.mkdir(parents=True)
    make_easyocr_weights(model_dir)
    image = Image.new("RGB", (400, 120), "white")
    with TestClient(create_app(settings)) as client:
        key = KeyStore(app_state(client).keys.engine).create("easyocr")
        response = client.post(
            "/api/v2/",
            data={"apikey": key, "type": "detect_text"},
            files={"file": encode(image)},
        )
    body = response.json()
    assert response.status_code == body["status"] == 200, body
    data = body["data"]
    assert data["model"]["name"] == "easyocr"
    assert data["text"] == "A"
    (line,) = data["objects"]
    assert line["text"] == "A" and line["confidence"] > 90
    box = line["box"]
    # The one region is the whole picture, in the picture's own pixels.
    assert box["left"] <= 10 and box["top"] <= 10
    assert box["left"] + box["width"] >= 390 and box["top"] + box["height"] >= 110
