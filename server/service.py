"""The analysis pipeline of one request: image checks → stored result → decode → preprocess →
batched predict → postprocess → store. Decoding and model work never run on the event loop."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.concurrency import run_in_threadpool

from models.base import Analysis, Recognizer
from models.device import set_thread_torch_threads
from server.checks import CACHE_DEFAULT_LIMIT, CheckedRequest
from server.db import StoredResult
from server.errors import ApiError, ErrorKind, ModelUnavailableError
from server.images import DecodedImage, ImageInfo, decode_image, inspect_image
from server.keys import KeyRecord, KeyStore
from server.model_manager import ModelManager
from server.results import ModelId, ResultStore, lookup_hash
from server.settings import Settings


class AnalysisService:
    def __init__(
        self,
        settings: Settings,
        keys: KeyStore,
        results: ResultStore,
        models: ModelManager,
    ):
        self.settings = settings
        self.keys = keys
        self.results = results
        self.models = models
        # One torch thread each: small torch work here (e.g. NMS) must not start OpenMP teams
        # beside the inference thread's (see ModelManager.torch_thread).
        self.decode_pool = ThreadPoolExecutor(
            max_workers=max(1, settings.decode_threads),
            thread_name_prefix="decode",
            initializer=set_thread_torch_threads,
            initargs=(1,),
        )

    async def _in_pool(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, func, *args)

    async def analyze(self, key: KeyRecord, request: CheckedRequest) -> dict[str, Any]:
        """Runs one analysis, charging one unit of quota only if it succeeds."""
        started = time.perf_counter()
        remaining = await run_in_threadpool(self.keys.reserve, key)  # 402 before any model
        try:
            data = await self._analyze(key, request)
        except BaseException:
            await asyncio.shield(run_in_threadpool(self.keys.refund, key))
            raise
        data["quota"] = remaining
        data["elapsed_ms"] = round((time.perf_counter() - started) * 1000.0, 1)
        return data

    async def _analyze(self, key: KeyRecord, request: CheckedRequest) -> dict[str, Any]:
        type_, params = request.type, request.params
        assert request.file is not None
        data_bytes = request.file
        if len(data_bytes) > self.settings.max_upload_bytes:
            raise ApiError(ErrorKind.IMAGE_TOO_LARGE)
        info = await self._in_pool(inspect_image, data_bytes, self.settings.max_image_pixels)

        # 503 (no model, or it cannot load) is answered only after the image checks (412).
        unavailable: ModelUnavailableError | None = None
        batcher = None
        try:
            batcher = await self.models.batcher(type_)
        except ModelUnavailableError as exc:
            unavailable = exc
        if batcher is not None:
            model_id = ModelId(batcher.model.name, batcher.model.version)
            lookup, stored = await run_in_threadpool(
                self._find_identical, key, info, type_, params, batcher.model, model_id
            )
            if stored is not None:
                data = self._envelope(type_, stored.objects, stored.id, info, model_id, True)
                data.update(stored.extra or {})
                return data
        if batcher is None:
            await self._in_pool(decode_image, data_bytes, info, None)  # 412 comes before 503
            raise unavailable or ModelUnavailableError(f"type {type_} is not available")
        model = batcher.model
        with batcher.expecting():
            image, item = await self._in_pool(self._prepare, model, data_bytes, info)
        output = await batcher.submit(item)
        result = await self._in_pool(model.postprocess, output, item, image, params)
        if not isinstance(result, Analysis):
            result = Analysis(result)
        result_id = await run_in_threadpool(
            self.results.save, key.id, type_, info, params, model_id, result, lookup
        )
        data = self._envelope(type_, result.objects, result_id, info, model_id, False)
        data.update(result.extra)
        return data

    def _find_identical(
        self,
        key: KeyRecord,
        info: ImageInfo,
        type_: str,
        params: dict[str, Any],
        model: Recognizer,
        model_id: ModelId,
    ) -> tuple[str, StoredResult | None]:
        """The key of this analysis among stored results, and the result stored under it.
        Blocking (the model's state may be read from the database, e.g. the gallery's)."""
        identity = {**params, "_state": model.state_token()}
        lookup = lookup_hash(key.id, info.sha256, type_, identity, model_id)
        return lookup, self.results.find_identical(key.id, lookup)

    @staticmethod
    def _prepare(model: Recognizer, data: bytes, info: ImageInfo) -> tuple[DecodedImage, Any]:
        """Decode and preprocess, in one trip to the pool."""
        image = decode_image(data, info, model.input_max_side)
        return image, model.preprocess(image)

    @staticmethod
    def _envelope(
        type_: str,
        objects: list[Any],
        result_id: str,
        info: Any,
        model: ModelId,
        cached: bool,
    ) -> dict[str, Any]:
        return {
            "error": 0,
            "type": type_,
            "objects": objects,
            "quota": None,
            "id": result_id,
            "image": info.as_dict(),
            "model": {"name": model.name, "version": model.version},
            "cached": cached,
        }

    async def cache(self, key: KeyRecord, request: CheckedRequest) -> dict[str, Any]:
        """This key's stored results, newest first; free of charge."""
        params = request.params
        if "id" in params:
            entry = await run_in_threadpool(self.results.one, key.id, params["id"])
            if entry is None:
                raise ApiError(ErrorKind.INVALID_PARAMETER, "id (no such result for this key)")
            entries = [entry]
        else:
            limit = params.get("limit", CACHE_DEFAULT_LIMIT)
            entries = await run_in_threadpool(self.results.recent, key.id, limit)
        remaining = await run_in_threadpool(self.keys.remaining, key)
        return {"error": 0, "type": "cache", "objects": entries, "quota": remaining}

    def close(self) -> None:
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
