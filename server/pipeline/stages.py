"""The stages of one image's analysis by one type's model, in their order, as plain blocking
functions:

    inspect (file checks) → decode (under the DecodeBudget) → preprocess
    → predict (a batch: one output or one error per item) → postprocess

Every engine runs these and only these: the pipeline (server/pipeline/analysis.py) in its
decode pool and its batchers, the Ray engine of `imagerecognize analyze`
(server/collection/ray_engine.py) in its tasks and model actors. So the checks, the decoding
at the model's size and the order live here once, and an answer never depends on the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from models.base import Analysis, ModelId, Recognizer
from models.images import (
    DecodedImage,
    ImageError,
    ImageErrorKind,
    ImageInfo,
    decode_image,
    inspect_image,
)
from server.errors import ModelUnavailableError
from server.pipeline.batching import run_batch
from server.settings import Settings


@dataclass(frozen=True)
class PipelineResult:
    """One image's analysis by one type's model."""

    type: str
    info: ImageInfo
    model: ModelId
    analysis: Analysis

    def data(self) -> dict[str, Any]:
        """The API's ``data`` for this image and type, without what the service adds (quota,
        id, cached, elapsed_ms: server/service/application.py)."""
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

    @classmethod
    def of(cls, settings: Settings) -> DecodeBudget:
        return cls(settings.decode_memory_mb * 1024 * 1024)

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


def inspect(data: bytes, settings: Settings) -> ImageInfo:
    """The checks of an image's bytes before decoding: file size, format and pixels (413,
    415, 412)."""
    if len(data) > settings.max_upload_bytes:
        raise ImageError(ImageErrorKind.TOO_LARGE)
    return inspect_image(data, settings.max_image_pixels)


def decode(
    model: Recognizer | type[Recognizer], data: bytes, info: ImageInfo, budget: DecodeBudget
) -> DecodedImage:
    """The image decoded at the size ``model`` reads (its class is enough), under the budget:
    held while decoding only, since what waits for the model is already reduced to its size."""
    with budget.hold(info.decode_bytes):
        return decode_image(data, info, model.input_max_side)


def check_decodable(data: bytes, info: ImageInfo, budget: DecodeBudget) -> None:
    """Decodes, for an unreadable file to be refused as such when no model can answer."""
    with budget.hold(info.decode_bytes):
        decode_image(data, info, 1)  # reduced as it is decoded: only its pixels matter


def preprocess(model: Recognizer, image: DecodedImage) -> Any:
    return model.preprocess(image)


def prepare(
    model: Recognizer, data: bytes, info: ImageInfo, budget: DecodeBudget
) -> tuple[DecodedImage, Any]:
    """decode, then preprocess: what runs before an image waits for its batch."""
    image = decode(model, data, info, budget)
    return image, preprocess(model, image)


def predict(model: Recognizer, items: list[Any]) -> list[Any]:
    """One model call per group of items of equal batch key; one output or one exception per
    item, never dependent on the rest of the batch (server/pipeline/batching.py)."""
    return run_batch(model, items)


def postprocess(
    model: Recognizer,
    type_: str,
    output: Any,
    item: Any,
    image: DecodedImage,
    params: dict[str, Any],
) -> PipelineResult:
    """The API's answer from the model's output. May call torch: callers run it in threads
    that keep torch to one thread."""
    analysis = model.postprocess(output, item, image, params)
    return PipelineResult(type_, image.info, model.model_id, analysis)


def analyse_decoded(
    model: Recognizer, type_: str, images: list[DecodedImage], params: dict[str, Any]
) -> list[PipelineResult | Exception]:
    """preprocess → predict → postprocess for decoded images held together (a Ray block):
    one result or one exception per image, in order; a bad image fails alone."""
    results: list[PipelineResult | Exception | None] = [None] * len(images)
    ready: list[tuple[int, Any]] = []
    for index, image in enumerate(images):
        try:
            ready.append((index, preprocess(model, image)))
        except Exception as exc:
            results[index] = exc
    outputs = predict(model, [item for _, item in ready]) if ready else []
    for (index, item), output in zip(ready, outputs, strict=True):
        if isinstance(output, Exception):
            results[index] = output
            continue
        try:
            results[index] = postprocess(model, type_, output, item, images[index], params)
        except Exception as exc:
            results[index] = exc
    return [result for result in results if result is not None]


def decode_once(
    models: list[Recognizer], data: bytes, info: ImageInfo, budget: DecodeBudget
) -> DecodedImage:
    """The image decoded once for several models: at the largest size any of them reads (a
    model without a limit reads the full size), under the budget. Each model's preprocess
    reduces it to its own size, as from its own decode (a JPEG larger than a model's side
    may then differ from its own draft decode by a grey level here and there)."""
    sides = [model.input_max_side for model in models]
    largest = None if None in sides else max(side for side in sides if side is not None)
    with budget.hold(info.decode_bytes):
        return decode_image(data, info, largest)


def prepare_once(
    models: dict[str, Recognizer], data: bytes, info: ImageInfo, budget: DecodeBudget
) -> tuple[DecodedImage, dict[str, Any]]:
    """decode once, then each type's model's preprocess: what runs before the image waits
    for its batches."""
    image = decode_once(list(models.values()), data, info, budget)
    return image, {type_: preprocess(model, image) for type_, model in models.items()}
