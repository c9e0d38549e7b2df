"""Readiness: every enabled type's model loaded and warmed with one real batch, the database
answering, the server not draining. Models are prepared before the server listens
(server/ops/prepare.py); with ``IMAGERECOGNIZE_PRELOAD=false`` /readyz names the models not
loaded yet (each is loaded, and warmed, by its first request)."""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import text
from sqlalchemy.engine import Engine

from server.catalog import TYPE_PARAMETERS
from server.ops.drain import Drain
from server.pipeline.analysis import AnalysisPipeline

log = logging.getLogger(__name__)

DATABASE_TIMEOUT_S = 3.0
WARM_IMAGE_SIDE = 128


def warm_image() -> bytes:
    """A small generated photo-like JPEG (a gradient with noise): enough for every model's
    real preprocess, predict and postprocess."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, WARM_IMAGE_SIDE, dtype=np.float32)
    pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (WARM_IMAGE_SIDE, 1)),
                       np.tile(ramp[:, None], (1, WARM_IMAGE_SIDE))], axis=-1)
    pixels += rng.normal(0, 12, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def warm_params(type_: str) -> dict[str, int]:
    """Valid parameters of a type (each rule's smallest value)."""
    return {name: rule.minimum for name, rule in TYPE_PARAMETERS.get(type_, {}).items()}


@dataclass
class Readiness:
    pipeline: AnalysisPipeline
    engine: Engine
    drain: Drain
    warm_errors: dict[str, str] = field(default_factory=dict)

    async def warm_up(self) -> None:
        """One real batch through every loaded model that has not run one yet."""
        image = warm_image()
        for type_, model in self.pipeline.models.readiness().items():
            if model["loaded"] and not model["warmed"]:
                await self.warm(type_, image)

    async def warm(self, type_: str, image: bytes | None = None) -> str | None:
        """One real batch of a small image through the type's model (loading it first if it
        is not); the error, also kept for /readyz, or None."""
        try:
            await self.pipeline.analyze(image or warm_image(), type_, warm_params(type_))
        except Exception as exc:
            log.exception("warming %s failed", type_)
            self.warm_errors[type_] = f"{type(exc).__name__}: {exc}"
            return self.warm_errors[type_]
        self.warm_errors.pop(type_, None)
        return None

    def _select_one(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    async def database_problem(self) -> str | None:
        try:
            await asyncio.wait_for(asyncio.to_thread(self._select_one), DATABASE_TIMEOUT_S)
        except TimeoutError:
            return f"no answer to SELECT 1 within {DATABASE_TIMEOUT_S:.0f} s"
        except Exception as exc:
            # The driver's message names host and port, never the password.
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None

    async def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body): the body names every model's state and each reason not to be ready."""
        problems: list[str] = []
        models: dict[str, dict[str, Any]] = {}
        for type_, model in self.pipeline.models.readiness().items():
            warm_error = self.warm_errors.get(type_)
            models[type_] = {**model, **({"warm_error": warm_error} if warm_error else {})}
            name = model["model"] or "(none)"
            if model["error"] and not model["loaded"]:
                problems.append(f"{type_}: model {name} failed to load ({model['error']})")
            elif not model["loaded"]:
                problems.append(f"{type_}: model {name} not loaded yet")
            elif not model["warmed"]:
                detail = f" ({warm_error})" if warm_error else ""
                problems.append(f"{type_}: model {name} not warmed yet{detail}")
        database = await self.database_problem()
        if database is not None:
            problems.append(f"database: {database}")
        if self.drain.draining:
            problems.append("draining: the server is shutting down")
        body = {
            "status": "ready" if not problems else "not ready",
            "not_ready": problems,
            "draining": self.drain.draining,
            "database": "ok" if database is None else database,
            "models": models,
        }
        return not problems, body
