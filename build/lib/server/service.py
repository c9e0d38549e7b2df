"""The analysis pipeline of one request: image checks → stored result → decode → preprocess →
batched predict → postprocess → store. Decoding and model work never run on the event loop."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from models.base import Analysis, Recognizer
from models.device import set_thread_torch_threads
from server.batching import Batcher
from server.checks import CACHE_DEFAULT_LIMIT, CheckedRequest
from server.db import StoredResult
from server.errors import ApiError, ErrorKind, ModelUnavailableError
from server.images import DecodedImage, ImageInfo, decode_image, inspect_image
from server.keys import KeyRecord, KeyStore
from server.model_manager import ModelManager
from server.results import ModelId, ResultStore, lookup_hash
from server.settings import Settings


@dataclass(frozen=True)
class Admission:
    """A request past its quota and image checks."""

    remaining: int | None  # quota left after this request (None: unlimited)
    info: ImageInfo
    model_id: ModelId
    lookup: str  # key of this analysis among stored results
    stored: StoredResult | None  # an identical analysis stored earlier


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
        """Runs one analysis, charging one unit of quota only if it succeeds.

        The blocking steps go to the pools in as few trips as the stages allow (admission,
        decode + preprocess, the batched model call, postprocess + store): on a small CPU
        every trip costs the event loop and the GIL about as much as the database work."""
        started = time.perf_counter()
        batcher: Batcher | None = None
        unavailable: ModelUnavailableError | None = None
        try:
            batcher = await self.models.batcher(request.type)  # loads the model on first use
        except ModelUnavailableError as exc:
            unavailable = exc  # answered only after the quota and image checks
        admission = await run_in_threadpool(self._admit, key, request, batcher, unavailable)
        try:
            if admission.stored is not None:
                data = self._stored_answer(request.type, admission)
            else:
                assert batcher is not None
                data = await self._analyze(key, request, batcher, admission)
        except BaseException:
            await asyncio.shield(run_in_threadpool(self.keys.refund, key))
            raise
        data["quota"] = admission.remaining
        data["elapsed_ms"] = round((time.perf_counter() - started) * 1000.0, 1)
        return data

    def _admit(
        self,
        key: KeyRecord,
        request: CheckedRequest,
        batcher: Batcher | None,
        unavailable: ModelUnavailableError | None,
    ) -> Admission:
        """Quota (402), then the image checks (413, 415, 412), then the model (503), then a
        stored identical result. Blocking; the quota is refunded if a check fails."""
        data = request.file
        assert data is not None
        if batcher is not None and not batcher.has_room():
            # Overloaded: refused before decoding, without taking quota, so that a flood of
            # requests cannot keep the cores busy decoding images that will not be analysed.
            # The checks that come before 503 still answer first (412 from the header only).
            if self.keys.remaining(key) == 0:
                raise ApiError(ErrorKind.QUOTA_REACHED)
            self._inspect(data)
            raise batcher.overloaded()
        remaining = self.keys.reserve(key)
        try:
            info = self._inspect(data)
            if batcher is None:
                decode_image(data, info, None)  # an undecodable file is 412 before 503
                raise unavailable or ModelUnavailableError(f"type {request.type} is unavailable")
            model = batcher.model
            model_id = ModelId(model.name, model.version)
            # The model's state (the gallery, for celebrities) may be read from the database.
            identity = {**request.params, "_state": model.state_token()}
            lookup = lookup_hash(key.id, info.sha256, request.type, identity, model_id)
            stored = self.results.find_identical(key.id, lookup)
        except BaseException:
            self.keys.refund(key)
            raise
        return Admission(remaining, info, model_id, lookup, stored)

    def _inspect(self, data: bytes) -> ImageInfo:
        if len(data) > self.settings.max_upload_bytes:
            raise ApiError(ErrorKind.IMAGE_TOO_LARGE)
        return inspect_image(data, self.settings.max_image_pixels)

    def _stored_answer(self, type_: str, admission: Admission) -> dict[str, Any]:
        stored = admission.stored
        assert stored is not None
        data = self._envelope(
            type_, stored.objects, stored.id, admission.info, admission.model_id, True
        )
        data.update(stored.extra or {})
        return data

    async def _analyze(
        self, key: KeyRecord, request: CheckedRequest, batcher: Batcher, admission: Admission
    ) -> dict[str, Any]:
        model, info = batcher.model, admission.info
        with batcher.expecting():
            image, item = await self._in_pool(self._prepare, model, request.file, info)
        output = await batcher.submit(item)
        result, result_id = await self._in_pool(
            self._finish, key, request, model, output, item, image, admission
        )
        data = self._envelope(
            request.type, result.objects, result_id, info, admission.model_id, False
        )
        data.update(result.extra)
        return data

    def _finish(
        self,
        key: KeyRecord,
        request: CheckedRequest,
        model: Recognizer,
        output: Any,
        item: Any,
        image: DecodedImage,
        admission: Admission,
    ) -> tuple[Analysis, str]:
        """Postprocess and store, in one trip to the decode pool (whose threads keep torch to
        one thread: postprocessing may call torch)."""
        result = model.postprocess(output, item, image, request.params)
        if not isinstance(result, Analysis):
            result = Analysis(result)
        result_id = self.results.save(
            key.id,
            request.type,
            admission.info,
            request.params,
            admission.model_id,
            result,
            admission.lookup,
        )
        return result, result_id

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
