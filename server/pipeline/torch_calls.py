"""The threads that run every torch model's calls, and how many cores each call uses.

On a CPU, model calls side by side, one core each, get through more images than one call
spread over every core: the small convolutions of MobileNet, EfficientNet-Lite and MTCNN's
networks leave cores idle between OpenMP regions (measured on 2 cores at batch 4: objects
+16-40 %, detect_faces +20-40 %; docs/performance.md). One image alone is answered sooner by
a call that uses every core. So a call that starts while no other runs gets all the torch
threads; one that starts beside others gets its share of them.

On CUDA the calls share one device and one stream: one call at a time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from models.runtimes.device import set_thread_torch_threads

T = TypeVar("T")


class TorchCalls:
    """``calls`` threads for torch model calls (``run``), sharing ``threads`` OpenMP threads."""

    def __init__(self, calls: int, threads: int) -> None:
        self.calls = max(1, calls)
        self.threads = max(1, threads)
        self.executor = ThreadPoolExecutor(
            max_workers=self.calls,
            thread_name_prefix="torch",
            initializer=set_thread_torch_threads,
            initargs=(self.threads,),
        )
        self._running = 0
        self._lock = threading.Lock()

    def run(self, func: Callable[..., T], *args: Any) -> T:
        """Calls ``func`` in the calling thread (one of ``executor``'s) with this call's share
        of the threads: all of them when no other call runs, else ``threads`` divided among
        the calls running now."""
        with self._lock:
            self._running += 1
            share = max(1, self.threads // self._running)
        try:
            if torch.get_num_threads() != share:
                torch.set_num_threads(share)
            return func(*args)
        finally:
            with self._lock:
                self._running -= 1

    async def submit(self, func: Callable[..., T], *args: Any) -> T:
        """``run`` in one of the torch threads, awaited."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.run, func, *args)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
