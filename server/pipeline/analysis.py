"""The analysis of one image, without HTTP, keys, quota or storage:

    inspect (header) → decode → preprocess → batch → predict → postprocess

Decoding, preprocessing and postprocessing run in the decode pool, ``predict`` in the model's
batcher (the torch threads, or ONNX Runtime's own threads); nothing blocking runs on the
event loop. The HTTP service (server/service/analysis.py) and offline callers use the same object:
``analyze`` runs every step; the service calls ``inspect`` and ``run`` separately so that its
quota and stored-result checks sit between them (server/service/admission.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from models.base import Analysis, ModelId, Recognizer
from models.images import (
    DecodedImage,
    ImageError,
    ImageErrorKind,
    ImageInfo,
    decode_image,
    inspect_image,
)
from models.options import FaceGallery
from models.runtimes.device import choose_device, set_thread_torch_threads
from server.errors import ModelUnavailableError
from server.pipeline.batching import Batcher
from server.pipeline.model_manager import ModelManager
from server.settings import Settings

__all__ = ["AnalysisPipeline", "ModelId", "PipelineResult"]

T = TypeVar("T")


def inspect_upload(data: bytes, settings: Settings) -> ImageInfo:
    """The checks of an image's bytes before decoding: file size, format and pixels (413,
    415, 412). Blocking."""
    if len(data) > settings.max_upload_bytes:
        raise ImageError(ImageErrorKind.TOO_LARGE)
    return inspect_image(data, settings.max_image_pixels)


@dataclass(frozen=True)
class PipelineResult:
    """One image's analysis by one type's model."""

    type: str
    info: ImageInfo
    model: ModelId
    analysis: Analysis

    def data(self) -> dict[str, Any]:
        """The API's ``data`` for this image and type, without what the service adds (quota,
        id, cached, elapsed_ms: server/service/analysis.py)."""
        return {
            "error": 0,
            "type": self.type,
            "objects": self.analysis.objects,
            "image": self.info.as_dict(),
            "model": {"name": self.model.name, "version": self.model.version},
            **self.analysis.extra,
        }


class DecodeBudget:
    """Bytes of pixels being decoded at once, bounded: a few hundred KB of PNG can decode to
    gigabytes. An image that does not fit beside those decoding is refused (503), not queued:
    its client retries. One image alone always fits, so that none is refused forever."""

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self.in_use = 0
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        with self._lock:
            if self.in_use and self.in_use + nbytes > self.limit_bytes:
                raise ModelUnavailableError(
                    "too many large images being decoded, retry later", retry_after=1
                )
            self.in_use += nbytes
        try:
            yield
        finally:
            with self._lock:
                self.in_use -= nbytes


class AnalysisPipeline:
    """The models of every type, their batchers, and the pool that decodes for them.

    ``gallery``: the one celebrities match against, handed in by the caller (the server's
    and ``analyze``'s come from the store: ``open_gallery``); without one, celebrities knows
    nobody."""

    def __init__(
        self,
        settings: Settings,
        device: torch.device | None = None,
        *,
        gallery: FaceGallery | None = None,
    ) -> None:
        self.settings = settings
        self.models = ModelManager(settings, device or choose_device(settings.device), gallery)
        # One torch thread each: small torch work here (e.g. NMS) must not start OpenMP teams
        # beside the inference thread's (see ModelManager.torch_thread).
        self.decode_budget = DecodeBudget(settings.decode_memory_mb * 1024 * 1024)
        self.decode_pool = ThreadPoolExecutor(
            max_workers=max(1, settings.decode_threads),
            thread_name_prefix="decode",
            initializer=set_thread_torch_threads,
            initargs=(1,),
        )

    @property
    def device(self) -> torch.device:
        return self.models.device

    # The whole analysis, for callers without quota or stored results.

    async def analyze(self, data: bytes, type_: str, params: dict[str, Any]) -> PipelineResult:
        """Analyses one image. ``params``: the type's validated parameters (e.g. max_labels,
        min_confidence for objects). Raises ImageError (the file: too large, not PNG/JPEG,
        unreadable) before ModelUnavailableError (the type's model cannot run)."""
        batcher, unavailable = await self.batcher_or_error(type_)
        info = await self.in_pool(self.inspect, data)
        if batcher is None:
            await self.in_pool(self.check_decodable, data, info)
            assert unavailable is not None
            raise unavailable
        result, _ = await self.run(batcher, type_, data, info, params)
        return result

    async def analyze_file(self, path: Path, type_: str, params: dict[str, Any]) -> PipelineResult:
        data = await asyncio.get_running_loop().run_in_executor(self.decode_pool, path.read_bytes)
        return await self.analyze(data, type_, params)

    # The steps, for the HTTP service.

    async def batcher(self, type_: str) -> Batcher:
        """The batcher of a type's model, loading the model on first use; 503 if it cannot."""
        return await self.models.batcher(type_)

    async def batcher_or_error(
        self, type_: str
    ) -> tuple[Batcher, None] | tuple[None, ModelUnavailableError]:
        """The batcher, or why there is none (answered only after the image checks)."""
        try:
            return await self.models.batcher(type_), None
        except ModelUnavailableError as exc:
            return None, exc

    def model_class(self, type_: str) -> type[Recognizer]:
        return self.models.model_class(type_)

    def inspect(self, data: bytes) -> ImageInfo:
        """Size, format and pixel count from the bytes and the header. Blocking."""
        return inspect_upload(data, self.settings)

    def check_decodable(self, data: bytes, info: ImageInfo) -> None:
        """Decodes, for an unreadable file to be refused as such. Blocking."""
        with self.decode_budget.hold(info.decode_bytes):
            decode_image(data, info, 1)  # reduced as it is decoded: only its pixels matter

    async def run(
        self,
        batcher: Batcher,
        type_: str,
        data: bytes,
        info: ImageInfo,
        params: dict[str, Any],
        then: Callable[[PipelineResult], T] | None = None,
    ) -> tuple[PipelineResult, T | None]:
        """decode + preprocess (one trip to the decode pool), the batched model call, then
        postprocess and ``then(result)`` (one more trip: the service stores the result there).
        On a small CPU every trip costs the event loop and the GIL about as much as the
        database work."""
        model = batcher.model
        with batcher.expecting():
            image, item = await self.in_pool(self._prepare, model, data, info, self.decode_budget)
        output = await batcher.submit(item)
        return await self.in_pool(self._finish, model, type_, output, item, image, params, then)

    @staticmethod
    def _prepare(
        model: Recognizer, data: bytes, info: ImageInfo, budget: DecodeBudget
    ) -> tuple[DecodedImage, Any]:
        # Held while decoding only: what waits for the model is already reduced to its size.
        with budget.hold(info.decode_bytes):
            image = decode_image(data, info, model.input_max_side)
        return image, model.preprocess(image)

    @staticmethod
    def _finish(
        model: Recognizer,
        type_: str,
        output: Any,
        item: Any,
        image: DecodedImage,
        params: dict[str, Any],
        then: Callable[[PipelineResult], T] | None,
    ) -> tuple[PipelineResult, T | None]:
        # In the decode pool, whose threads keep torch to one thread: postprocessing may
        # call torch.
        analysis = model.postprocess(output, item, image, params)
        result = PipelineResult(type_, image.info, model.model_id, analysis)
        return result, (then(result) if then is not None else None)

    async def in_pool(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, func, *args)

    def status(self) -> dict[str, dict[str, Any]]:
        return self.models.status()

    async def preload(self) -> None:
        await self.models.preload()

    async def close(self) -> None:
        await self.models.close()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
