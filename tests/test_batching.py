"""The dynamic batcher: batches form, each request gets its own result or error, the queue is
bounded, and a deadline answers 503."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from models.base import Analysis, Recognizer, WeightSource
from models.detect_faces.mtcnn import MtcnnFaceDetector
from server.errors import ModelUnavailableError
from server.http.app import create_app
from server.pipeline.batching import Batcher, run_batch
from server.pipeline.torch_calls import TorchCalls
from server.store.keys import KeyStore
from tests.conftest import app_state, encode, make_settings, model_options


class Doubler(Recognizer):
    """A stand-in model that records its calls: the batcher's mechanics, not a model's."""

    type = "detect_faces"
    name = "doubler"
    source = WeightSource.PACKAGED
    weights = "none"

    def __init__(self, delay_s: float = 0.0):
        super().__init__(torch.device("cpu"), model_options())
        self.delay_s = delay_s
        self.calls: list[list[Any]] = []

    @property
    def version(self) -> str:
        return "1"

    def load(self) -> None:
        pass

    def preprocess(self, image: Any) -> Any:
        return image

    def batch_key(self, item: Any) -> Hashable:
        return isinstance(item, str)

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        self.calls.append(list(batch))
        time.sleep(self.delay_s)
        if any(item == -1 for item in batch):
            raise ValueError("bad item")
        return [item * 2 for item in batch]

    def postprocess(self, output: Any, item: Any, image: Any, params: dict) -> Analysis:
        return Analysis([output])


def test_a_bad_item_fails_alone() -> None:
    model = Doubler()
    results = run_batch(model, [1, -1, 3, "a"])
    assert results[0] == 2 and results[2] == 6 and results[3] == "aa"
    assert isinstance(results[1], ValueError)
    # One grouped call per batch key, then the failing group item by item.
    assert model.calls[0] == [1, -1, 3] and ["a"] in model.calls and [3] in model.calls


def test_concurrent_requests_share_model_calls() -> None:
    async def scenario() -> tuple[list[Any], list[list[Any]]]:
        model = Doubler(delay_s=0.05)
        batcher = Batcher(model, max_batch_size=4, max_wait_ms=20, queue_size=64, timeout_s=10)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.stop()
        return results, model.calls

    results, calls = asyncio.run(scenario())
    assert results == [2 * i for i in range(10)]
    assert len(calls) < 10 and max(len(c) for c in calls) == 4
    assert sorted(i for call in calls for i in call) == list(range(10))


@pytest.mark.slow
def test_several_workers_run_batches_side_by_side() -> None:
    async def scenario(workers: int) -> tuple[list[Any], float]:
        batcher = Batcher(
            Doubler(0.3),
            max_batch_size=1,
            max_wait_ms=0,
            queue_size=8,
            timeout_s=10,
            workers=workers,
        )
        started = time.perf_counter()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(4)))
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return results, elapsed

    one_results, one = asyncio.run(scenario(1))
    two_results, two = asyncio.run(scenario(2))
    assert one_results == two_results == [0, 2, 4, 6]
    assert one >= 1.2 and two < 0.9  # four 0.3 s calls: in turn, or two at a time


def test_full_queue_answers_503_with_retry_after() -> None:
    async def scenario() -> list[Any]:
        batcher = Batcher(Doubler(0.3), max_batch_size=1, max_wait_ms=0, queue_size=2, timeout_s=10)
        outcomes = await asyncio.gather(
            *(batcher.submit(i) for i in range(6)), return_exceptions=True
        )
        await batcher.stop()
        return outcomes

    outcomes = asyncio.run(scenario())
    refused = [o for o in outcomes if isinstance(o, ModelUnavailableError)]
    assert refused and all(o.retry_after == 1 and o.status == 503 for o in refused)
    assert any(o == 0 for o in outcomes)


def test_deadline_answers_503() -> None:
    async def scenario() -> BaseException | Any:
        model = Doubler(0.5)
        batcher = Batcher(model, max_batch_size=1, max_wait_ms=0, queue_size=8, timeout_s=0.1)
        outcome = (await asyncio.gather(batcher.submit(1), return_exceptions=True))[0]
        await batcher.stop()
        return outcome

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, ModelUnavailableError) and "timed out" in outcome.status_message


@pytest.mark.slow
def test_overloaded_server_answers_503_with_retry_after_header(
    tmp_path: Path, astronaut: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "data", queue_size=1, max_batch_size=1, max_wait_ms=0)
    slow_predict = MtcnnFaceDetector.predict
    gate = threading.Event()

    def slow(self, batch):
        gate.wait(5)
        return slow_predict(self, batch)

    monkeypatch.setattr(MtcnnFaceDetector, "predict", slow)
    with TestClient(create_app(settings)) as client:
        keys = KeyStore(app_state(client).keys.engine)
        key = keys.create("busy", quota=100)
        images = [encode(astronaut.resize((64 + i, 64))) for i in range(6)]
        images.append(b"not an image at all")  # its own error comes before any 503

        def send(data: bytes):
            return client.post(
                "/api/v2/", data={"apikey": key, "type": "detect_faces"}, files={"file": data}
            )

        with ThreadPoolExecutor(len(images)) as pool:
            futures = [pool.submit(send, data) for data in images]
            time.sleep(1.5)
            gate.set()
            responses = [f.result() for f in futures]
        # Only answered analyses are charged; refused ones never took quota.
        assert keys.find("busy").quota == 100 - [r.status_code for r in responses].count(200)
    statuses = [r.status_code for r in responses]
    assert statuses[-1] == 415
    assert 503 in statuses and 200 in statuses, statuses
    for response in responses:
        assert response.json()["status"] == response.status_code
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1"


def test_batch_limits_per_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGERECOGNIZE_MAX_BATCH_SIZES", '{"objects": 8}')
    monkeypatch.setenv("IMAGERECOGNIZE_MAX_WAIT_MS_BY_TYPE", '{"nsfw": 12.5}')
    settings = make_settings(tmp_path / "data")
    assert settings.batch_limits("objects", 4) == (8, 5.0)  # the type's own setting
    assert settings.batch_limits("nsfw", 4) == (4, 12.5)  # the model's default size
    assert make_settings(tmp_path, max_batch_size=2).batch_limits("detect_text", 1) == (2, 5.0)


class Rendezvous(Doubler):
    """A model whose calls return only once ``parties`` of them run at the same time, each
    recording the torch threads it was given."""

    concurrent_calls = True

    def __init__(self, parties: int):
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)
        self.threads: list[int] = []

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        self.threads.append(torch.get_num_threads())
        self.barrier.wait()
        return super().predict(batch)


def test_torch_calls_run_side_by_side_sharing_the_threads() -> None:
    """With TorchCalls(2, 2) a torch model's batches run two at a time (a call that waited
    for another would break the rendezvous), each with one of the two threads; a call alone
    gets both."""
    torch_calls = TorchCalls(calls=2, threads=2)

    async def scenario(model: Recognizer, items: list[int], workers: int) -> list[Any]:
        batcher = Batcher(
            model,
            max_batch_size=1,
            max_wait_ms=0,
            queue_size=8,
            timeout_s=20,
            torch_calls=torch_calls,
            workers=workers,
        )
        try:
            return await asyncio.gather(*(batcher.submit(item) for item in items))
        finally:
            await batcher.stop()

    try:
        pair = Rendezvous(parties=2)
        assert asyncio.run(scenario(pair, [1, 2], workers=2)) == [2, 4]
        assert sorted(pair.threads) == [1, 2]  # the first started alone, the second beside it
        alone = Rendezvous(parties=1)
        assert asyncio.run(scenario(alone, [5], workers=2)) == [10]
        assert alone.threads == [2]
    finally:
        torch_calls.shutdown()


def test_side_by_side_batches_only_for_models_that_take_them(tmp_path: Path) -> None:
    """ModelManager gives a torch model several batchers' workers only when the loaded model
    takes concurrent calls: MTCNN does, dlib's own descriptor network does not."""
    from server.pipeline.model_manager import ModelManager

    async def workers(type_: str, **overrides: object) -> int:
        settings = make_settings(tmp_path, torch_calls=2, **overrides)
        manager = ModelManager(settings, torch.device("cpu"))
        try:
            return (await manager.batcher(type_)).workers
        finally:
            await manager.close()

    assert asyncio.run(workers("detect_faces")) == 2
    assert asyncio.run(workers("celebrities", celebrities_descriptor_runtime="torch")) == 2
    assert asyncio.run(workers("celebrities", celebrities_descriptor_runtime="dlib")) == 1
