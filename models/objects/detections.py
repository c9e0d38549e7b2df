"""COCO detections of the objects models: non-maximum suppression of raw detector output, and
the merge of detector and classifier labels into the API's labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torchvision

from models.common import box_dict, confidence
from models.objects.coco import COCO_LABELS

NMS_IOU = 0.6
MAX_PER_CLASS = 100
MAX_DETECTIONS = 100
# The detector's own floor: below 1 % its boxes are noise, whatever min_confidence says.
MIN_SCORE = 0.01


@dataclass(frozen=True)
class Detection:
    label: str
    score: float  # 0..1
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax, normalised


def merge_labels(
    detections: Sequence[Detection],
    classifications: Sequence[tuple[str, float]],
    width: int,
    height: int,
    max_labels: int,
    min_confidence: int,
) -> list[dict[str, Any]]:
    """The API's labels (docs/api.md): one per name, detector labels with their boxes as instances,
    classifier labels without; most confident first; filtered and cut after the merge."""
    labels: dict[str, dict[str, Any]] = {}
    for detection in sorted(detections, key=lambda d: d.score, reverse=True):
        score = confidence(detection.score)
        if score < min_confidence:
            continue
        x1, y1, x2, y2 = detection.box
        instance = {
            "confidence": score,
            "box": box_dict(x1 * width, y1 * height, x2 * width, y2 * height, width, height),
        }
        label = labels.setdefault(
            detection.label, {"name": detection.label, "confidence": score, "instances": []}
        )
        label["instances"].append(instance)
    for name, probability in classifications:
        score = confidence(probability)
        if score < min_confidence:
            continue
        if name in labels:
            labels[name]["confidence"] = max(labels[name]["confidence"], score)
        else:
            labels[name] = {"name": name, "confidence": score, "instances": []}
    ordered = sorted(labels.values(), key=lambda label: label["confidence"], reverse=True)
    return ordered[:max_labels]


def nms_detections(boxes: torch.Tensor, scores: torch.Tensor, min_score: float) -> list[Detection]:
    """Per-class NMS over one image's decoded boxes (N x 4, ymin xmin ymax xmax) and class
    scores (N x 91): IoU 0.6, 100 per class, 100 in all, boxes clipped to the image."""
    candidates = (scores[:, 1:] >= min_score).nonzero()
    if candidates.numel() == 0:
        return []
    anchor, cls = candidates[:, 0], candidates[:, 1] + 1
    picked_scores = scores[anchor, cls]
    xyxy = boxes[anchor][:, [1, 0, 3, 2]]
    keep = torchvision.ops.batched_nms(xyxy, picked_scores, cls, NMS_IOU)
    per_class: dict[int, int] = {}
    detections = []
    for index in keep.tolist():
        class_id = int(cls[index])
        if class_id not in COCO_LABELS or per_class.get(class_id, 0) >= MAX_PER_CLASS:
            continue
        per_class[class_id] = per_class.get(class_id, 0) + 1
        x1, y1, x2, y2 = xyxy[index].clamp(0.0, 1.0).tolist()
        detections.append(
            Detection(COCO_LABELS[class_id], float(picked_scores[index]), (x1, y1, x2, y2))
        )
        if len(detections) >= MAX_DETECTIONS:
            break
    return detections


@dataclass(frozen=True)
class RawDetections:
    """SSD's decoded boxes and scores for every anchor, before NMS (which depends on the
    request's threshold)."""

    boxes: torch.Tensor  # 1917 x 4, ymin xmin ymax xmax, normalised
    scores: torch.Tensor  # 1917 x 91, sigmoid

    def select(self, min_score: float) -> list[Detection]:
        return nms_detections(self.boxes, self.scores, min_score)


@dataclass(frozen=True)
class FinalDetections:
    """Detections already past NMS at a low threshold."""

    detections: list[Detection]

    def select(self, min_score: float) -> list[Detection]:
        return [d for d in self.detections if d.score >= min_score]


class DetectorOutput(Protocol):
    def select(self, min_score: float) -> list[Detection]: ...


