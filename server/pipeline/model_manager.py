"""Which model serves each type, lazy loading under a lock, and each model's batcher.

A type whose model fails to load answers 503 while every other type keeps working; the load
is tried again after ``RETRY_LOAD_AFTER_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from models.base import Recognizer
from models.options import FaceGallery
from models.runtimes.device import choose_device
from models.types import API_TYPES
from server.errors import ModelUnavailableError
from server.pipeline.batching import Batcher
from server.pipeline.torch_calls import TorchCalls
from server.settings import Settings
from server.telemetry import metrics

log = logging.getLogger(__name__)

RETRY_LOAD_AFTER_S = 60.0


def load_model(
    settings: Settings,
    type_: str,
    device: torch.device | None = None,
    gallery: FaceGallery | None = None,
    model_class: type[Recognizer] | None = None,
) -> Recognizer:
    """The model serving ``type_`` built on ``device`` (by default ``IMAGERECOGNIZE_DEVICE``'s
    choice) with the settings' options, and loaded: how the server, the CLI and the Ray
    engine's actors each get one. Runs in the caller's thread, whose torch threads it uses."""
    cls = model_class or settings.model_class(type_)
    if cls is None:
        raise ModelUnavailableError(f"type {type_} is not available on this server")
    model = cls(device or choose_device(settings.device), settings.model_options(gallery))
    model.load()
    return model


@dataclass
class _Slot:
    """The model of one type and its state."""

    type: str
    model_class: type[Recognizer] | None
    model: Recognizer | None = None
    batcher: Batcher | None = None
    error: str | None = None
    failed_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelManager:
    def __init__(
        self, settings: Settings, device: torch.device, gallery: FaceGallery | None = None
    ):
        self.settings = settings
        self.device = device
        self.gallery = gallery
        # Every torch model loads and runs in these threads, which share the torch threads
        # (server/pipeline/torch_calls.py). OpenMP keeps one team of threads per calling thread, and
        # once a process has more OpenMP threads than cores, libgomp stops spin-waiting:
        # measured here, that makes every torch call ~50 % slower; so no other pool calls torch
        # with more than one thread.
        self.torch_calls = TorchCalls(
            settings.resolved_torch_calls(device.type), settings.torch_threads
        )
        self._slots: dict[str, _Slot] = {}
        for type_ in API_TYPES:
            try:
                cls = settings.model_class(type_)
            except LookupError as exc:
                # A misconfigured type fails alone; say why in the log and in its 503.
                log.error("type %s: %s", type_, exc)
                self._slots[type_] = _Slot(type_, None, error=str(exc), failed_at=float("inf"))
                continue
            self._slots[type_] = _Slot(type_, cls)

    def model_class(self, type_: str) -> type[Recognizer]:
        """The class serving a type, without loading it; 503 when the type has none."""
        slot = self._slots[type_]
        if slot.model_class is None:
            raise ModelUnavailableError(
                slot.error or f"type {type_} is not available on this server"
            )
        return slot.model_class

    def _load(self, slot: _Slot) -> Recognizer:
        with slot.lock:
            if slot.model is not None:
                return slot.model
            cls = self.model_class(slot.type)  # 503 naming the problem when there is none
            if slot.error is not None and time.monotonic() - slot.failed_at < RETRY_LOAD_AFTER_S:
                raise ModelUnavailableError(f"model for {slot.type} failed to load")
            started = time.perf_counter()
            try:
                model = load_model(self.settings, slot.type, self.device, self.gallery, cls)
            except Exception as exc:
                log.exception("loading %s/%s failed", slot.type, cls.name)
                metrics.MODEL_LOADED.labels(cls.name, str(self.device)).set(0)
                slot.error = f"{type(exc).__name__}"
                slot.failed_at = time.monotonic()
                raise ModelUnavailableError(f"model for {slot.type} failed to load") from None
            log.info(
                "loaded %s/%s on %s in %.1f s",
                slot.type,
                cls.name,
                self.device,
                time.perf_counter() - started,
            )
            slot.error = None
            slot.model = model
            metrics.MODEL_LOADED.labels(cls.name, str(self.device)).set(1)
            # The models' hundreds of thousands of objects live as long as the process: out of
            # the collector's sight, a full collection takes ~0 ms instead of 175 ms (measured
            # with every model loaded), during which the event loop would stand still.
            gc.freeze()
            return model

    async def batcher(self, type_: str) -> Batcher:
        """The loaded model's batcher, loading the model on first use."""
        slot = self._slots[type_]
        if slot.batcher is not None:
            return slot.batcher
        cls = self.model_class(type_)
        if slot.model is not None:
            model = slot.model
        elif cls.uses_torch:
            model = await self.torch_calls.submit(self._load, slot)
        else:
            model = await asyncio.to_thread(self._load, slot)
        if slot.batcher is None:
            # A model may compute with torch only once loaded (an ONNX network's torch port):
            # then its calls, too, belong to the torch threads.
            torch_calls = self.torch_calls if model.runs_torch else None
            if not model.takes_concurrent_calls:
                workers = 1
            elif torch_calls is not None:
                workers = torch_calls.calls
            else:
                workers = self.settings.onnx_instances
            max_batch_size, max_wait_ms = self.settings.batch_limits(
                type_, model.default_batch_size()
            )
            slot.batcher = Batcher(
                model,
                max_batch_size=max_batch_size,
                max_wait_ms=max_wait_ms,
                queue_size=self.settings.queue_size,
                timeout_s=self.settings.request_timeout_s,
                torch_calls=torch_calls,
                workers=workers,
            )
            slot.batcher.start()
        return slot.batcher

    def served_types(self) -> list[str]:
        """The types this server has a model class for, loaded or not."""
        return [type_ for type_, slot in self._slots.items() if slot.model_class is not None]

    async def preload(self) -> None:
        for type_ in self.served_types():
            # A failure is logged by _load, and the type answers 503.
            with contextlib.suppress(ModelUnavailableError):
                await self.batcher(type_)

    def status(self) -> dict[str, dict[str, Any]]:
        return {
            type_: {
                "model": slot.model_class.name if slot.model_class else None,
                "loaded": slot.model is not None,
                "error": slot.error,
                "queued": slot.batcher.queued if slot.batcher else 0,
            }
            for type_, slot in self._slots.items()
        }

    def readiness(self) -> dict[str, dict[str, Any]]:
        """Per type this server serves (or is configured to serve and cannot): the model,
        whether it is loaded, whether its batcher has run a batch (warmed), the load error."""
        return {
            type_: {
                "model": slot.model_class.name if slot.model_class else None,
                "loaded": slot.model is not None,
                "warmed": slot.batcher is not None and slot.batcher.batches_done > 0,
                "error": slot.error,
            }
            for type_, slot in self._slots.items()
            if slot.model_class is not None or slot.error is not None
        }

    async def close(self) -> None:
        for slot in self._slots.values():
            if slot.batcher is not None:
                await slot.batcher.stop()
                slot.batcher = None
            if slot.model is not None:
                metrics.MODEL_LOADED.labels(slot.model.name, str(self.device)).set(0)
                slot.model.unload()
                slot.model = None
        self.torch_calls.shutdown()
        await asyncio.sleep(0)
