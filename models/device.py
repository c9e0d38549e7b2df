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
