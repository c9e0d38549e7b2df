"""Prepared before serving (IMAGERECOGNIZE_PRELOAD, on by default): `serve` loads and warms
every served model before it listens, a log line per model, and says "ready" only once it
answers; with PRELOAD=false it listens at once and loads each model on first use."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient

from server.http.app import create_app
from server.ops.announce import base_url, bind_problem
from server.settings import Settings
from tests.conftest import ROOT, free_port, make_settings

START_TIMEOUT_S = 600.0


def test_preload_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("IMAGERECOGNIZE_PRELOAD", raising=False)
    assert Settings(data_dir=tmp_path).preload is True


def test_without_preload_models_load_on_first_use(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", preload=False)
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        body = response.json()
        assert response.status_code == 503
        assert body["models"] and not any(model["loaded"] for model in body["models"].values())
        for type_, model in body["models"].items():
            assert f"{type_}: model {model['model']} not loaded yet" in body["not_ready"]


def test_the_ready_line_asks_the_address_it_serves() -> None:
    assert base_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert base_url("::", 8000) == "http://[::1]:8000"
    assert base_url("192.0.2.7", 81) == "http://192.0.2.7:81"
    assert base_url("fe80::1", 81) == "http://[fe80::1]:81"


def test_a_taken_port_is_refused_before_preparing() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        problem = bind_problem("127.0.0.1", taken.getsockname()[1])
    assert problem is not None and "in use" in problem
    assert bind_problem("127.0.0.1", free_port()) is None


def first_answer(base: str, process: subprocess.Popen, log: Path) -> requests.Response:
    """The first answer of /readyz once something listens (refused connections before)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            # Long enough for a connection that waits in the socket's queue for a worker.
            return requests.get(base + "/readyz", timeout=START_TIMEOUT_S)
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"the server never listened: {log.read_text()}")


def wait_for_line(log: Path, text: str, times: int = 1, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (content := log.read_text()).count(text) >= times:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never logged {times} times: {log.read_text()}")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_preloaded_server_is_ready_as_soon_as_it_listens(tmp_path: Path, workers: int) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "IMAGERECOGNIZE_DATA_DIR": str(tmp_path / "data"),  # new: conversions included
        "IMAGERECOGNIZE_PRELOAD": "true",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port),
             "--workers", str(workers)],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        response = first_answer(f"http://127.0.0.1:{port}", process, log)
        body = response.json()
        assert response.status_code == 200, body
        assert body["status"] == "ready" and body["not_ready"] == []
        served = sorted(body["models"])
        assert served and all(model["warmed"] for model in body["models"].values())
        wait_for_line(log, "ready: answering on")
        # A second worker may still be preparing while the first answers: until it is done.
        text = wait_for_line(log, f"prepared {len(served)} of {len(served)} models", workers)
        # Every model counts as loaded (with several workers: in every process that counts).
        exposition = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        loaded = [line for line in exposition.splitlines()
                  if line.startswith("imagerecognize_model_loaded{")]
        assert loaded and all(line.endswith(" 1.0") for line in loaded), loaded
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    lines = text.splitlines()
    for type_ in served:
        model = body["models"][type_]["model"]
        prepared = [line for line in lines if f"prepared {type_} ({model}) in " in line]
        assert len(prepared) == workers, text  # one line per model, in every worker
        assert "loaded in" in prepared[0] and "warm-up batch" in prepared[0]
    assert sum(f"prepared {len(served)} of {len(served)} models" in line for line in lines) == (
        workers
    )
    # Said once, by `serve` itself, after a worker (the first to be) had prepared every model.
    ready_lines = [index for index, line in enumerate(lines) if "ready: answering on" in line]
    assert len(ready_lines) == 1
    # A line of its own, for a script to wait for.
    assert lines[ready_lines[0]] == f"ready: answering on http://127.0.0.1:{port}/"
    # A clean start: no page of Alembic's INFO lines, no CUDA warning on a CPU host.
    assert not [line for line in lines if "INFO alembic" in line], text
    assert "No CUDA runtime is found" not in text
    first_done = min(i for i, line in enumerate(lines) if f"prepared {len(served)} of" in line)
    assert ready_lines[0] > first_done
    if workers > 1:  # converted once, before the workers, in a process of its own
        assert sum("model folder prepared in" in line for line in lines) == 1
        assert sum("converted frozen_inference_graph.pb" in line for line in lines) <= 1
