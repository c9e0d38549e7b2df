"""The API's answers to admitted requests: an analysis (from the pipeline, or the identical
one stored earlier), charged only when it succeeds, and type=cache."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.concurrency import run_in_threadpool

from models.base import Analysis
from server.catalog import CACHE_DEFAULT_LIMIT
from server.errors import ApiError, ErrorKind
from server.pipeline.analysis import AnalysisPipeline, PipelineResult
from server.service.admission import Admitted, AdmittedImage
from server.service.checks import NO_SUCH_RESULT, could_be_stored_result_id
from server.store.audit import api_actor
from server.store.keys import KeyRecord, KeyStore
from server.store.results import ResultStore


def analysis_data(
    result: PipelineResult,
    *,
    quota: int | None,
    result_id: str | None,
    cached: bool,
    started: float,
) -> dict[str, Any]:
    """The API's ``data`` of one analysis: the pipeline's, and what only the service knows."""
    return {
        **result.data(),
        "quota": quota,
        "id": result_id,
        "cached": cached,
        "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 1),
    }


class AnalysisService:
    def __init__(self, keys: KeyStore, results: ResultStore, pipeline: AnalysisPipeline):
        self.keys = keys
        self.results = results
        self.pipeline = pipeline

    async def analyze(self, admitted: Admitted) -> dict[str, Any]:
        """Runs one admitted analysis; its quota (taken at admission) is refunded if it fails."""
        image = admitted.image
        assert image is not None
        try:
            if image.stored is not None:
                stored = image.stored
                analysis = Analysis(stored.objects, stored.extra or {})
                result = PipelineResult(admitted.type, image.info, image.model_id, analysis)
                result_id, cached = stored.id, True
                await run_in_threadpool(self.keys.settle, image.reservation)
            else:
                result, saved_id = await self.pipeline.run(
                    image.batcher,
                    admitted.type,
                    image.data,
                    image.info,
                    admitted.params,
                    then=lambda result: self._save(admitted.key, admitted.params, image, result),
                )
                # None: storing is off (IMAGERECOGNIZE_STORE_RESULTS=false).
                result_id, cached = saved_id, False
        except BaseException:
            # Given back unless its result was stored (then the unit stays charged).
            await asyncio.shield(run_in_threadpool(self.keys.refund, image.reservation))
            raise
        return analysis_data(
            result,
            quota=image.reservation.remaining,
            result_id=result_id,
            cached=cached,
            started=image.started,
        )

    def _save(
        self,
        key: KeyRecord,
        params: dict[str, Any],
        image: AdmittedImage,
        result: PipelineResult,
    ) -> str | None:
        return self.results.save(
            key.id,
            result.type,
            result.info,
            params,
            result.model,
            result.analysis,
            image.lookup,
            image.reservation,
        )

    async def cache(self, admitted: Admitted) -> dict[str, Any]:
        """This key's stored results, newest first; free of charge. With storing off, none,
        and ``storing: false`` says why."""
        key, params = admitted.key, admitted.params
        if not self.results.storing:
            entries = []
        elif "id" in params:
            entry = await run_in_threadpool(self.results.one, key.id, params["id"])
            if entry is None:
                raise ApiError(ErrorKind.INVALID_PARAMETER, NO_SUCH_RESULT)
            entries = [entry]
        else:
            limit = params.get("limit", CACHE_DEFAULT_LIMIT)
            entries = await run_in_threadpool(self.results.recent, key.id, limit)
        remaining = await run_in_threadpool(self.keys.remaining, key)
        return {
            "error": 0,
            "type": "cache",
            "objects": entries,
            "quota": remaining,
            "storing": self.results.storing,
        }

    async def delete(self, key: KeyRecord, result_id: str) -> dict[str, Any]:
        """Deletes one of ``key``'s stored results; 421 when it has none by that id (another
        key's result is not told apart from none)."""
        if not could_be_stored_result_id(result_id):
            raise ApiError(ErrorKind.INVALID_PARAMETER, NO_SUCH_RESULT)
        deleted = await run_in_threadpool(
            self.results.delete, key.id, result_id, actor=api_actor(key.name)
        )
        if not deleted:
            raise ApiError(ErrorKind.INVALID_PARAMETER, NO_SUCH_RESULT)
        return {"deleted": result_id}
