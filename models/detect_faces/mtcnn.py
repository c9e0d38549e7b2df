"""detect_faces: MTCNN from facenet-pytorch, on the weights that ship inside that package."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from models.base import Analysis, Recognizer, WeightSource
from models.common import box_dict, confidence, package_dir, package_version
from models.images import DecodedImage
from models.options import ModelOptions
from models.runtimes.device import stack_to_device

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# P-, R- and O-Net score thresholds and pyramid factor: facenet-pytorch's defaults.
STAGE_THRESHOLDS = (0.6, 0.7, 0.7)
PYRAMID_FACTOR = 0.709


@dataclass(frozen=True)
class FacesInput:
    pixels: np.ndarray  # H x W x 3 uint8, the detection image
    scale: float  # detection image width / displayed image width


@dataclass(frozen=True)
class FaceDetection:
    box: np.ndarray  # x1, y1, x2, y2 in the detection image
    probability: float
    landmarks: np.ndarray  # 5 x 2 (x, y) in the detection image


class MtcnnFaceDetector(Recognizer):
    """Multi-task cascaded CNN face detector: boxes, five landmarks, probability."""

    type: ClassVar[str] = "detect_faces"
    concurrent_calls: ClassVar[bool] = True  # facenet-pytorch's cascade keeps no state
    name: ClassVar[str] = "mtcnn"
    source: ClassVar[WeightSource] = WeightSource.PACKAGED
    weights: ClassVar[str] = "facenet_pytorch/data/{pnet,rnet,onet}.pt (package facenet-pytorch)"

    def __init__(self, device: torch.device, options: ModelOptions):
        super().__init__(device, options)
        self.max_side = options.faces.max_side
        self.min_face_size = options.faces.min_face_size
        self.input_max_side = self.max_side
        self._nets: tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module] | None = None

    @property
    def version(self) -> str:
        return f"facenet-pytorch-{package_version('facenet-pytorch')}"

    @classmethod
    def weights_present(cls, model_dir: Path) -> bool:
        folder = package_dir("facenet_pytorch")
        return folder is not None and all(
            (folder / "data" / f"{net}.pt").is_file() for net in ("pnet", "rnet", "onet")
        )

    def load(self) -> None:
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

        nets = tuple(net(pretrained=True).to(self.device).eval() for net in (PNet, RNet, ONet))
        self._nets = nets  # type: ignore[assignment]

    def unload(self) -> None:
        self._nets = None
        super().unload()

    def preprocess(self, image: DecodedImage) -> FacesInput:
        rgb = image.rgb
        longest = max(rgb.size)
        if longest > self.max_side:
            factor = self.max_side / longest
            size = (max(1, round(rgb.width * factor)), max(1, round(rgb.height * factor)))
            rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
        scale = rgb.width / image.info.width
        return FacesInput(pixels=np.asarray(rgb, dtype=np.uint8), scale=scale)

    def batch_key(self, item: FacesInput) -> Hashable:
        # MTCNN's pyramid depends on the image size: only equal sizes share a call.
        return item.pixels.shape

    def predict(self, batch: Sequence[FacesInput]) -> list[list[FaceDetection]]:
        from facenet_pytorch.models.utils.detect_face import detect_face

        if self._nets is None:
            raise RuntimeError("model not loaded")
        pnet, rnet, onet = self._nets
        height, width = batch[0].pixels.shape[:2]  # one size per batch (batch_key)
        if min(height, width) < self.min_face_size:
            # MTCNN's pyramid starts at the smallest face: a smaller image holds none (and
            # detect_face fails on an empty pyramid).
            return [[] for _ in batch]
        pixels = stack_to_device([item.pixels for item in batch], self.device)
        with torch.inference_mode():
            batch_boxes, batch_points = detect_face(
                pixels,
                self.min_face_size,
                pnet,
                rnet,
                onet,
                list(STAGE_THRESHOLDS),
                PYRAMID_FACTOR,
                self.device,
            )
        outputs: list[list[FaceDetection]] = []
        for boxes, points in zip(batch_boxes, batch_points, strict=True):
            # Under numpy 2 these come back as dtype=object arrays.
            boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
            points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
            outputs.append(
                [
                    FaceDetection(box=b[:4], probability=float(b[4]), landmarks=p)
                    for b, p in zip(boxes, points, strict=True)
                ]
            )
        return outputs

    def postprocess(
        self,
        output: list[FaceDetection],
        item: FacesInput,
        image: DecodedImage,
        params: dict[str, Any],
    ) -> Analysis:
        ordered = sorted(output, key=lambda f: f.probability, reverse=True)
        return Analysis(
            [face_object(face, item.scale, image.info.width, image.info.height) for face in ordered]
        )


def face_object(face: FaceDetection, scale: float, width: int, height: int) -> dict[str, Any]:
    """One face in the API's shape, mapped from the detection image (``scale`` = detection
    width / displayed width) to displayed pixels."""
    x1, y1, x2, y2 = (face.box / scale).tolist()
    landmarks = {
        name: {
            "x": min(max(round(x / scale), 0), width),
            "y": min(max(round(y / scale), 0), height),
        }
        for name, (x, y) in zip(LANDMARK_NAMES, face.landmarks.tolist(), strict=True)
    }
    return {
        "confidence": confidence(face.probability),
        "box": box_dict(x1, y1, x2, y2, width, height),
        "landmarks": landmarks,
    }
