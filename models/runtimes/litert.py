"""LiteRT (the TFLite interpreter, package ai-edge-litert) on the CPU, for a model that ships
as a .tflite file: the file itself runs, on XNNPACK, so its answers are the reference's.

An interpreter runs one call at a time and its thread count is fixed when it is made: calls
side by side each take an interpreter from a pool of their thread count (every thread for a
call alone, one for a call beside others), made on first need. The models run here are
integer (int8) graphs, whose arithmetic does not depend on the thread count: a call gives
the same answer whatever its share of the cores.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def litert_version() -> str:
    from models.common import package_version

    return package_version("ai-edge-litert")


class LiteRtNetwork:
    """A .tflite model with one input and one output; the output dequantised to float32."""

    runtime = "litert"

    def __init__(self, path: Path, threads: int):
        self.path = Path(path)
        self.threads = max(1, threads)
        self._pools: dict[int, list[Any]] = {}
        self._running = 0
        self._lock = threading.Lock()
        first = self._make(self.threads)  # reads the file now: a bad one fails the load
        self._pools[self.threads] = [first]
        source, target = first.get_input_details()[0], first.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in source["shape"])
        self.input_dtype = np.dtype(source["dtype"])
        self.input_quantization = source["quantization"]  # (scale, zero point)
        self._output_quantization = target["quantization"]

    def _make(self, threads: int) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
        interpreter.allocate_tensors()
        return interpreter

    @contextlib.contextmanager
    def _interpreter(self, share: int | None) -> Iterator[Any]:
        with self._lock:
            self._running += 1
            alone = self._running == 1 and (share is None or share >= self.threads)
            threads = self.threads if alone else 1
            pool = self._pools.setdefault(threads, [])
            interpreter = pool.pop() if pool else None
        if interpreter is None:
            interpreter = self._make(threads)
        try:
            yield interpreter
        finally:
            with self._lock:
                self._running -= 1
                self._pools[threads].append(interpreter)

    def run(self, array: np.ndarray, share: int | None = None) -> np.ndarray:
        """The output for one input (the graph's own shape and dtype). ``share``: the threads
        this call may use, as for the OpenVINO networks (models/runtimes/openvino.py)."""
        with self._interpreter(share) as interpreter:
            source = interpreter.get_input_details()[0]["index"]
            target = interpreter.get_output_details()[0]["index"]
            interpreter.set_tensor(source, array)
            interpreter.invoke()
            output = interpreter.get_tensor(target)
        scale, zero_point = self._output_quantization
        if scale:
            return (output.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
        return output.astype(np.float32)
