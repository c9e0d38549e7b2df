"""Choice of the inference device."""

from __future__ import annotations

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
