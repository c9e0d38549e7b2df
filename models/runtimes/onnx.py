"""ONNX Runtime sessions for the models that ship as ONNX files: providers and threads."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


def create_session(path: Path, device: torch.device, threads: int):
    """A session on CUDA when the device is CUDA and onnxruntime-gpu is installed, else on
    the CPU with ``threads`` intra-op threads (and one inter-op thread, so that several
    models running at once do not oversubscribe the cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle worker threads sleep instead of spinning: spinning threads would take the cores
    # from the decode pool and the other models between calls.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Without ORT's own arena, memory that a batch of 8 needed goes back once it is done
    # (measured: open_nsfw keeps 70 MB less, at the same speed within 3 %).
    options.enable_cpu_mem_arena = False
    providers: list = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    return ort.InferenceSession(str(path), options, providers=providers)


class SharedSession:
    """One model file as two sessions: a wide one with all ``threads`` for a call that runs
    alone, and a narrow one with ``threads / instances`` for calls that run side by side
    (several batches of the model in flight): on a small CPU, single-threaded calls side by
    side use the cores better than one split call, and a lone request keeps every thread
    (docs/performance.md)."""

    def __init__(self, path: Path, device: torch.device, threads: int, instances: int = 1):
        self.wide = create_session(path, device, threads)
        narrow = max(1, threads // max(1, instances))
        self.narrow = self.wide if narrow == threads else create_session(path, device, narrow)
        self._running = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _pick(self) -> Iterator[Any]:
        with self._lock:
            self._running += 1
            session = self.wide if self._running == 1 else self.narrow
        try:
            yield session
        finally:
            with self._lock:
                self._running -= 1

    def run(self, inputs: dict[str, Any]) -> list[Any]:
        with self._pick() as session:
            return session.run(None, inputs)

    def input_name(self) -> str:
        return self.wide.get_inputs()[0].name
