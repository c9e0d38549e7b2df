"""One analysis pipeline usable without HTTP: image checks → decode → preprocess → batched
predict → postprocess. No key, quota or stored results: those belong to the HTTP service."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from models.base import Analysis, Recognizer
from models.device import choose_device, set_thread_torch_threads
from server.db import init_db, make_engine
from server.errors import ApiError, ErrorKind, ModelUnavailableError
from server.gallery import Gallery
from server.images import DecodedImage, ImageInfo, decode_image, inspect_image
from server.model_manager import ModelManager
from server.results import ModelId
from server.settings import Settings


@dataclass(frozen=True)
class PipelineResult:
    type: str
    info: ImageInfo
    model: ModelId
    analysis: Analysis

    def data(self) -> dict[str, Any]:
        """The API's ``data`` for this analysis, without quota, id, cached and elapsed_ms."""
        return {
            "error": 0,
            "type": self.type,
            "objects": self.analysis.objects,
            "image": self.info.as_dict(),
            "model": {"name": self.model.name, "version": self.model.version},
            **self.analysis.extra,
        }


class AnalysisPipeline:
    def __init__(self, settings: Settings, device: torch.device | None = None) -> None:
        self.settings = settings
        self.engine = make_engine(settings.resolved_database_url)
        init_db(self.engine)
        # celebrities reads the gallery of the data folder, as the server does.
        self.models = ModelManager(
            settings, device or choose_device(settings.device), Gallery(self.engine)
        )
        self.decode_pool = ThreadPoolExecutor(
            max_workers=max(1, settings.decode_threads),
            thread_name_prefix="decode",
            initializer=set_thread_torch_threads,
            initargs=(1,),
        )

    async def _in_pool(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, func, *args)

    async def analyze(self, data: bytes, type_: str, params: dict[str, Any]) -> PipelineResult:
        """The analysis of one image; raises ApiError (412, 413, 415, 503) as the API would."""
        try:
            batcher = await self.models.batcher(type_)
        except ModelUnavailableError as unavailable:
            # The image checks answer before the model's 503, as in the API.
            await self._in_pool(self._check_only, data)
            raise unavailable
        model = batcher.model
        with batcher.expecting():
            image, item = await self._in_pool(self._prepare, model, data)
        output = await batcher.submit(item)
        analysis = await self._in_pool(self._finish, model, output, item, image, params)
        return PipelineResult(type_, image.info, ModelId(model.name, model.version), analysis)

    def _inspect(self, data: bytes) -> ImageInfo:
        if len(data) > self.settings.max_upload_bytes:
            raise ApiError(ErrorKind.IMAGE_TOO_LARGE)
        return inspect_image(data, self.settings.max_image_pixels)

    def _check_only(self, data: bytes) -> None:
        decode_image(data, self._inspect(data), None)

    def _prepare(self, model: Recognizer, data: bytes) -> tuple[DecodedImage, Any]:
        image = decode_image(data, self._inspect(data), model.input_max_side)
        return image, model.preprocess(image)

    @staticmethod
    def _finish(
        model: Recognizer, output: Any, item: Any, image: DecodedImage, params: dict[str, Any]
    ) -> Analysis:
        result = model.postprocess(output, item, image, params)
        return result if isinstance(result, Analysis) else Analysis(result)

    async def close(self) -> None:
        await self.models.close()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()
