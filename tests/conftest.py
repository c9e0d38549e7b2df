"""Shared fixtures: real test images from packages, an in-process app, and a live server."""

from __future__ import annotations

import dataclasses
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from fastapi.testclient import TestClient
from PIL import Image

from models.options import ModelOptions
from server.http.app import create_app
from server.service.application import ApplicationService
from server.settings import Settings
from server.store.db import init_db, make_engine
from server.store.keys import KeyStore
from tests.databases import database_url, postgres_url  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent

# Each test's model folder is new, so torch.compile would start from nothing every time (a
# minute per process on 2 cores): tests run the networks uncompiled, which give the same
# outputs (tests/test_objects.py compiles once and checks that).
os.environ.setdefault("IMAGERECOGNIZE_COMPILE", "false")
# Apps and servers started by tests load a model only when a test uses its type (tests that
# check preparing before serving ask for it: tests/test_operations.py, tests/test_preload.py).
os.environ.setdefault("IMAGERECOGNIZE_PRELOAD", "false")

API_URL = "/api/v2/"


def encode(image: Image.Image | np.ndarray, fmt: str = "JPEG", **options: object) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.astronaut())


@pytest.fixture(scope="session")
def grace_hopper() -> Image.Image:
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        return Image.open(handle).convert("RGB")


@pytest.fixture(scope="session")
def coffee() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.coffee())


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut: Image.Image) -> bytes:
    return encode(astronaut, "JPEG", quality=95)


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    return Settings(data_dir=data_dir, **overrides)


def key_store(settings: Settings) -> KeyStore:
    """The key store of the database ``settings`` name, its schema created."""
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    return KeyStore(engine)


def model_options(model_dir: Path | None = None, **overrides: object) -> ModelOptions:
    """What the server builds its models with (``overrides``: Settings fields)."""
    options = Settings(**overrides).model_options()
    return options if model_dir is None else dataclasses.replace(options, model_dir=model_dir)


def app_state(client: TestClient) -> ApplicationService:
    """The service of a running test app (its key store, result store, gallery, pipeline...)."""
    return client.app.state.imagerecognize.service


def post_api(
    client: TestClient,
    fields: dict[str, str] | None = None,
    file: bytes | None = None,
    url: str = API_URL,
) -> dict:
    """POSTs ``fields`` and ``file`` to the API; the body, once its status is checked to be
    the HTTP status."""
    files = {"file": ("file", file)} if file is not None else None
    response = client.post(url, data=fields or {}, files=files)
    body = response.json()
    assert response.status_code == body["status"], "HTTP status must equal the body's status"
    return body


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def keys(settings: Settings) -> KeyStore:
    return key_store(settings)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def apikey(keys: KeyStore) -> str:
    return keys.create("tester")


def run_cli(data_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`imagerecognize ARGS` on the data folder ``data_dir``."""
    env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """An `imagerecognize serve` process on a free port."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v2/"
        self.log = data_dir.parent / f"server-{self.port}.log"
        environment = dict(os.environ)
        environment["IMAGERECOGNIZE_DATA_DIR"] = str(data_dir)
        environment.update(env or {})
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--port", str(self.port)],
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/health", timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings.data_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def reference_photos(astronaut: Image.Image, grace_hopper: Image.Image, coffee: Image.Image):
    """The seven reference photos of docs/models.md, by name."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {
        "astronaut": astronaut,
        "coffee": coffee,
        "chelsea": Image.fromarray(skimage.data.chelsea()),
        "rocket": Image.fromarray(skimage.data.rocket()),
        "grace_hopper": grace_hopper,
        "china": Image.fromarray(china),
        "flower": Image.fromarray(flower),
    }
