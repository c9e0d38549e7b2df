"""objects: the shared shape of its models, a COCO detector for labels with boxes and the
packaged ImageNet classifier for labels of the whole image."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import Analysis, Part, Recognizer, device_name
from models.images import DecodedImage
from models.objects.detections import MIN_SCORE, DetectorOutput, merge_labels
from models.objects.imagenet import ImageNetClassifier, classifier_runtime
from models.options import ModelOptions
from models.runtimes.device import cpu_network_runtime


@dataclass(frozen=True)
class ObjectsInput:
    detector: torch.Tensor
    classifier: torch.Tensor | np.ndarray  # ImageNetClassifier.preprocess's, per runtime


@dataclass(frozen=True)
class ObjectsOutput:
    detections: DetectorOutput
    classes: list[tuple[str, float]]  # the classifier's best ImageNet labels


class ClassifiedDetector(Recognizer):
    """An objects model: a COCO detector for labels with boxes, and the packaged ImageNet
    classifier for labels of the whole image."""

    type: ClassVar[str] = "objects"
    concurrent_calls: ClassVar[bool] = True  # the detectors' and classifier's modules keep no state
    # The detector's runtime on the CPU (the classifier's: models/objects/imagenet.py)
    detector_cpu_runtime: ClassVar[str] = "torch"

    @classmethod
    def placement(cls, device: torch.device, options: ModelOptions) -> tuple[Part, ...]:
        detector = cpu_network_runtime(device, options.cpu_runtime, cls.detector_cpu_runtime)
        classifier = classifier_runtime(device, options.cpu_runtime)
        where = device_name(device)
        return (Part("detector", detector, where), Part("classifier", classifier, where))

    def __init__(self, device: torch.device, options: ModelOptions):
        super().__init__(device, options)
        self.model_dir = options.model_dir
        self.classifier = ImageNetClassifier(
            device, self.model_dir, options.torch_threads, options.compile, options.cpu_runtime
        )

    @abstractmethod
    def load_detector(self) -> None: ...

    @abstractmethod
    def detector_input(self, image: DecodedImage) -> torch.Tensor: ...

    @abstractmethod
    def detect(self, inputs: list[torch.Tensor]) -> list[DetectorOutput]: ...

    def load(self) -> None:
        self.load_detector()
        self.classifier.load()

    def unload(self) -> None:
        self.classifier.net = None
        self.classifier.litert = None
        super().unload()

    def preprocess(self, image: DecodedImage) -> ObjectsInput:
        return ObjectsInput(self.detector_input(image), self.classifier.preprocess(image.rgb))

    def predict(self, batch: Sequence[ObjectsInput]) -> list[ObjectsOutput]:
        detections = self.detect([item.detector for item in batch])
        classes = self.classifier.predict([item.classifier for item in batch])
        return [ObjectsOutput(d, c) for d, c in zip(detections, classes, strict=True)]

    def postprocess(
        self, output: ObjectsOutput, item: Any, image: DecodedImage, params: dict[str, Any]
    ) -> Analysis:
        min_confidence = params["min_confidence"]
        detections = output.detections.select(max(min_confidence / 100, MIN_SCORE))
        return Analysis(
            merge_labels(
                detections,
                output.classes,
                image.info.width,
                image.info.height,
                params["max_labels"],
                min_confidence,
            )
        )
