"""What the models are told at construction, typed. Built once from the server's settings
(``Settings.model_options``), where every default lives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


class GalleryMatrix(Protocol):
    def nearest(self, query: np.ndarray) -> tuple[str, float] | None:
        """The nearest enrolled face's person and its distance; None when there is none."""
        ...


class FaceGallery(Protocol):
    """The operator's gallery of known people, as the celebrities models read it."""

    def version(self) -> int: ...

    def matrix(self, model: str) -> GalleryMatrix: ...


@dataclass(frozen=True)
class FacesOptions:
    max_side: int  # longest side of the image MTCNN looks at
    min_face_size: int  # smallest face MTCNN looks for, in pixels of that image


@dataclass(frozen=True)
class OnnxOptions:
    threads: int  # intra-op threads of a call running alone
    instances: int  # calls that may run side by side
    cpu_runtime: str = "auto"  # on CPU: auto, onnxruntime or torch (their ports); CUDA: torch


@dataclass(frozen=True)
class ModelOptions:
    model_dir: Path  # fetched and converted weights
    faces: FacesOptions  # detect_faces, and the face finder of celebrities
    celebrities_threshold: float | None  # None: each descriptor model's own
    # dlib_resnet's descriptor on the CPU: auto, dlib or torch (CUDA: always torch)
    celebrities_descriptor_runtime: str
    text_max_side: int  # longest side of the image the text detector sees
    onnx: OnnxOptions  # ONNX Runtime models (nsfw, pp_ocrv4)
    # Torch threads on CPU of the calls whose answers would change with the count (the objects
    # classifier rounds to an int8 grid): they always run with this many.
    torch_threads: int
    gallery: FaceGallery | None = None  # celebrities match against it; None: nobody known
    # torch.compile the networks measured to gain from it (models/runtimes/compiled.py)
    compile: bool = False
    # On CPU: "auto", each network on the runtime measured fastest with the same answers
    # (OpenVINO, LiteRT, ONNX Runtime), or "torch": no OpenVINO and no LiteRT
    cpu_runtime: str = "auto"
    # type -> "fp16" or "bf16": that model's batches run under autocast, on CUDA only
    half_precision: dict[str, str] = field(default_factory=dict)
