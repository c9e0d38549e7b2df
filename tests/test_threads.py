"""Torch thread counts per thread pool: each pool keeps the count it was given, whatever
order the pools start in (torch's lazy per-thread init otherwise resets a thread to the
count set last by any thread, and a second OpenMP team slows every model call)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from models.runtimes.device import set_thread_torch_threads


def _count_seen_by_a_parallel_call() -> int:
    torch.ones(1 << 20).add_(1)  # large enough to be split across threads
    return torch.get_num_threads()


def test_each_pool_keeps_its_torch_thread_count() -> None:
    with (
        ThreadPoolExecutor(1, initializer=set_thread_torch_threads, initargs=(1,)) as decode,
        ThreadPoolExecutor(1, initializer=set_thread_torch_threads, initargs=(3,)) as infer,
    ):
        decode.submit(lambda: None).result()  # decode's thread starts: count set to 1
        infer.submit(lambda: None).result()  # then another thread sets 3
        assert decode.submit(_count_seen_by_a_parallel_call).result() == 1
        assert infer.submit(_count_seen_by_a_parallel_call).result() == 3
