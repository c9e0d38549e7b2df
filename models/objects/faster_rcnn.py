"""objects, fetched: torchvision's Faster R-CNN ResNet-50 FPN v2 (COCO box mAP 46.7), built
without downloads and loaded from the official state dict in the model folder."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import WeightSource
from models.images import DecodedImage
from models.objects.coco import COCO_LABELS
from models.objects.detections import MIN_SCORE, Detection, DetectorOutput, FinalDetections
from models.objects.imagenet import ImageNetClassifier
from models.objects.shared import ClassifiedDetector
from models.options import ModelOptions
from models.runtimes.device import tensor_to_device
from models.weights.fetch import manifest_entry

MANIFEST_NAME = "fasterrcnn_resnet50_fpn_v2"


class FasterRcnnDetector(ClassifiedDetector):
    name: ClassVar[str] = "faster_rcnn_resnet50_fpn_v2"
    source: ClassVar[WeightSource] = WeightSource.FETCHED
    preference: ClassVar[int] = 10  # more accurate than the packaged SSD
    weights: ClassVar[str] = (
        "model folder: fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth "
        "(`imagerecognize models fetch fasterrcnn_resnet50_fpn_v2`)"
    )
    # torchvision resizes to a shorter side of 800 and a longer side of at most 1333.
    input_max_side: ClassVar[int | None] = 1333

    def __init__(self, device: torch.device, options: ModelOptions):
        super().__init__(device, options)
        self._net: torch.nn.Module | None = None

    @classmethod
    def weights_file(cls, model_dir: Path) -> Path:
        return model_dir / manifest_entry(MANIFEST_NAME).filename

    @classmethod
    def weights_present(cls, model_dir: Path) -> bool:
        return cls.weights_file(model_dir).is_file() and ImageNetClassifier.present()

    @property
    def version(self) -> str:
        return f"{manifest_entry(MANIFEST_NAME).filename}+{ImageNetClassifier.VERSION}"

    def load_detector(self) -> None:
        from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2

        net = fasterrcnn_resnet50_fpn_v2(
            weights=None, weights_backbone=None, num_classes=91, box_score_thresh=MIN_SCORE
        )
        path = self.weights_file(self.model_dir)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} missing: run `imagerecognize models fetch {MANIFEST_NAME}`"
            )
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self._net = net.eval().to(self.device)

    def unload(self) -> None:
        self._net = None
        super().unload()

    def detector_input(self, image: DecodedImage) -> torch.Tensor:
        pixels = np.asarray(image.rgb, dtype=np.float32) / np.float32(255.0)
        return torch.from_numpy(pixels).permute(2, 0, 1)

    def batch_key(self, item: Any) -> Hashable:
        # Images of different sizes are padded together by torchvision, which moves results
        # slightly: only equal sizes share a call.
        return tuple(item.detector.shape)

    def detect(self, inputs: list[torch.Tensor]) -> list[DetectorOutput]:
        if self._net is None:
            raise RuntimeError("model not loaded")
        with torch.inference_mode():
            results = self._net([tensor_to_device(tensor, self.device) for tensor in inputs])
        outputs: list[DetectorOutput] = []
        for tensor, result in zip(inputs, results, strict=True):
            height, width = tensor.shape[1:]
            scale = torch.tensor([width, height, width, height], dtype=torch.float32)
            boxes = (result["boxes"].cpu() / scale).clamp(0.0, 1.0)
            detections = [
                Detection(COCO_LABELS[label], float(score), tuple(box.tolist()))
                for box, score, label in zip(
                    boxes, result["scores"].cpu(), result["labels"].cpu().tolist(), strict=True
                )
                if label in COCO_LABELS
            ]
            outputs.append(FinalDetections(detections))
        return outputs
