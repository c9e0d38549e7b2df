"""The analysis of one image, without HTTP, keys, quota or storage:

    inspect (header) → decode → preprocess → batch → predict → postprocess

The stages themselves, and their order, are server/pipeline/stages.py; this object runs them
in its pools. Decoding, preprocessing and postprocessing run in the decode pool, ``predict``
in the model's batcher (the torch threads, or ONNX Runtime's own threads); nothing blocking
runs on the event loop. The application service (server/service/application.py) and offline
callers use the same object: ``analyze`` runs every step; the service calls ``inspect`` and
``run`` separately so that its quota and stored-result checks sit between them, and
``predict`` where it works with the model's own output (faces and their descriptors).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from models.base import ModelId, Recognizer
from models.images import DecodedImage, ImageInfo
from models.options import FaceGallery
from models.runtimes.device import choose_device, set_thread_torch_threads
from server.errors import ModelUnavailableError
from server.pipeline import stages
from server.pipeline.batching import Batcher
from server.pipeline.model_manager import ModelManager
from server.pipeline.stages import DecodeBudget, PipelineResult
from server.settings import Settings

__all__ = [
    "AnalysisPipeline",
    "DecodeBudget",
    "ModelId",
    "PipelineResult",
    "Prediction",
    "inspect_upload",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Prediction:
    """One image's model output before postprocess, with what it was computed from."""

    model: Recognizer
    image: DecodedImage
    item: Any  # what preprocess made of the image
    output: Any


def inspect_upload(data: bytes, settings: Settings) -> ImageInfo:
    """The checks of an image's bytes before decoding (server/pipeline/stages.py). Blocking."""
    return stages.inspect(data, settings)


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
        self.decode_budget = DecodeBudget.of(settings)
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

    async def predict(self, type_: str, data: bytes) -> Prediction:
        """inspect → decode → preprocess → the batched model call, without postprocess: for
        callers that work with the model's own output (the gallery's faces and descriptors).
        Raises ModelUnavailableError, then ImageError."""
        batcher = await self.batcher(type_)
        info = await self.in_pool(self.inspect, data)
        model = batcher.model
        with batcher.expecting():
            image, item = await self.in_pool(stages.prepare, model, data, info, self.decode_budget)
        return Prediction(model, image, item, await batcher.submit(item))

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
        stages.check_decodable(data, info, self.decode_budget)

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
            image, item = await self.in_pool(stages.prepare, model, data, info, self.decode_budget)
        output = await batcher.submit(item)
        return await self.in_pool(self._finish, model, type_, output, item, image, params, then)

    async def run_types(
        self,
        batchers: dict[str, Batcher],
        data: bytes,
        info: ImageInfo,
        params: dict[str, dict[str, Any]],
    ) -> dict[str, PipelineResult]:
        """Several types' analyses of one image: decoded once (at the largest size any of
        their models reads) and each type's preprocess in one trip to the decode pool, each
        model's batched call (side by side), then each postprocess in one more trip. Any
        failure fails the whole (the first one is raised)."""
        with contextlib.ExitStack() as expecting:
            for batcher in batchers.values():
                expecting.enter_context(batcher.expecting())
            models = {type_: batcher.model for type_, batcher in batchers.items()}
            image, items = await self.in_pool(
                stages.prepare_once, models, data, info, self.decode_budget
            )
        outputs = await asyncio.gather(
            *(batcher.submit(items[type_]) for type_, batcher in batchers.items())
        )
        done = dict(zip(batchers, outputs, strict=True))
        return await self.in_pool(self._finish_types, models, done, items, image, params)

    @staticmethod
    def _finish_types(
        models: dict[str, Recognizer],
        outputs: dict[str, Any],
        items: dict[str, Any],
        image: DecodedImage,
        params: dict[str, dict[str, Any]],
    ) -> dict[str, PipelineResult]:
        return {
            type_: stages.postprocess(
                model, type_, outputs[type_], items[type_], image, params[type_]
            )
            for type_, model in models.items()
        }

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
        result = stages.postprocess(model, type_, output, item, image, params)
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
