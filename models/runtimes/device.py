"""Choice of the inference device."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch


def choose_device(requested: str | None) -> torch.device:
    """The configured device, else CUDA when present, else CPU."""
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} requested but CUDA is not available")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_thread_torch_threads(count: int) -> None:
    """Sets the OpenMP threads of torch calls made from the calling thread (a thread pool's
    initializer).

    torch initialises each thread lazily on its first parallel call, to the count most
    recently set by ANY thread; so a pool set to 1 after the inference thread set 2 would be
    reset to 2 by its first call, and start a second OpenMP team. Asking for the count runs
    that initialisation now, and the count set after it stays.
    """
    torch.get_num_threads()
    torch.set_num_threads(count)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Runs the block's torch calls, in the calling thread, with ``count`` threads."""
    before = torch.get_num_threads()
    if before != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if before != count:
            torch.set_num_threads(before)


def stack_to_device(arrays: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Equal-shaped arrays as one batch tensor on ``device``.

    On CUDA the batch is stacked straight into page-locked (pinned) host memory and copied
    with ``non_blocking=True``: the copy is a DMA that overlaps the host's next work, and
    kernels queued after it on the same stream wait for it. torch's caching host allocator
    keeps the pinned buffer until the copy has finished, and reuses it for later batches.
    On the CPU it is ``torch.from_numpy(np.stack(arrays))``: no pinning, no extra copy.
    """
    if device.type != "cuda":
        return torch.from_numpy(np.stack(arrays))
    first = np.asarray(arrays[0])
    dtype = torch.from_numpy(np.empty(0, dtype=first.dtype)).dtype
    host = torch.empty((len(arrays), *first.shape), dtype=dtype, pin_memory=True)
    np.stack(arrays, out=host.numpy())
    return host.to(device, non_blocking=True)


def tensor_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on ``device``; to CUDA through pinned memory, without blocking the host
    (see :func:`stack_to_device`). On the CPU, the tensor itself."""
    if device.type != "cuda" or tensor.device.type == "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def cpu_network_runtime(device: torch.device, requested: str, cpu_default: str) -> str:
    """The runtime of a network defined in torch: torch on CUDA (the one CUDA stack); on the
    CPU ``cpu_default`` (the runtime measured fastest there with the same answers), unless the
    operator asked for torch (IMAGERECOGNIZE_CPU_RUNTIME=torch)."""
    if device.type != "cpu" or requested == "torch":
        return "torch"
    return cpu_default
