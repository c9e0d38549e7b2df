"""Where each served model computes (device and runtime), and IMAGERECOGNIZE_REQUIRE_GPU.

Known from the settings alone, without loading a model: `imagerecognize models list` prints
it, the server logs it at start, and a server that was asked for a GPU refuses to start when
any served model would compute on the CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from models.base import Part, Recognizer
from models.runtimes.device import choose_device
from models.types import API_TYPES
from server.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    type: str
    model: type[Recognizer]
    parts: tuple[Part, ...]

    @property
    def on_cpu(self) -> list[Part]:
        return [part for part in self.parts if part.device == "cpu"]

    def describe(self) -> str:
        """"torch on cuda:0", or per network when the model has several."""
        if len(self.parts) == 1:
            return f"{self.parts[0].runtime} on {self.parts[0].device}"
        return ", ".join(str(part) for part in self.parts)


def served_models(settings: Settings, device: torch.device) -> list[ServedModel]:
    """The model serving each type that has one, and where its networks compute."""
    options = settings.model_options()
    served = []
    for type_ in API_TYPES:
        try:
            cls = settings.model_class(type_)
        except LookupError:
            continue  # misconfigured: the type answers 503, and ModelManager logs why
        if cls is not None:
            served.append(ServedModel(type_, cls, cls.placement(device, options)))
    return served


def gpu_requirement_problem(settings: Settings) -> str | None:
    """Why the server may not start under IMAGERECOGNIZE_REQUIRE_GPU (None: it may)."""
    if not settings.require_gpu:
        return None
    refusal = "IMAGERECOGNIZE_REQUIRE_GPU is set, but "
    try:
        device = choose_device(settings.device)
    except RuntimeError as exc:
        return refusal + str(exc)
    if device.type != "cuda":
        if settings.device:
            return refusal + f"IMAGERECOGNIZE_DEVICE is {settings.device!r}"
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "without CUDA"
        return refusal + f"no CUDA device is available (torch {torch.__version__}, built {build})"
    on_cpu = [
        f"{served.type} ({served.model.name}: {', '.join(str(p) for p in served.on_cpu)})"
        for served in served_models(settings, device)
        if served.on_cpu
    ]
    if on_cpu:
        return refusal + "these would compute on the CPU: " + "; ".join(on_cpu)
    return None


def log_placements(settings: Settings, device: torch.device) -> None:
    """One start-up log line per served type: its model, runtimes and devices."""
    for served in served_models(settings, device):
        log.info("%s: %s, %s", served.type, served.model.name, served.describe())
