"""detect_faces: MTCNN from facenet-pytorch, on the weights that ship inside that package; on
the CPU its three networks run on OpenVINO (converted once into the model folder), inside
facenet-pytorch's own cascade."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from models.base import Analysis, Part, Recognizer, WeightSource, device_name
from models.common import box_dict, confidence, package_dir, package_version, sha256_of
from models.images import DecodedImage
from models.options import ModelOptions
from models.runtimes.device import cpu_network_runtime, stack_to_device, torch_threads

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# P-, R- and O-Net score thresholds and pyramid factor: facenet-pytorch's defaults.
STAGE_THRESHOLDS = (0.6, 0.7, 0.7)
PYRAMID_FACTOR = 0.709
# On the CPU: OpenVINO in float32, measured x1.1-1.5 faster for a whole detection than torch,
# boxes within 1e-4 px (docs/performance.md).
CPU_RUNTIME = "openvino"
NETWORKS = ("pnet", "rnet", "onet")
# Threads of the cascade's own torch ops around the networks (the image pyramid's
# resampling, one resize per candidate box, box handling): hundreds of small ops per image,
# each an OpenMP region where the team costs more than it saves. One thread gives the same
# bits, and measured 3.6x faster for the whole detection on 2 busy cores (docs/performance.md).
CASCADE_THREADS = 1
# Each network's input when traced for OpenVINO, and the dimensions left free: P-Net sees
# every pyramid level's size, R- and O-Net a batch of as many crops as there are candidates.
OPENVINO_INPUTS = {
    "pnet": ((1, 3, 64, 64), (0, 2, 3)),
    "rnet": ((1, 3, 24, 24), (0,)),
    "onet": ((1, 3, 48, 48), (0,)),
}


def planar_float(pixels: torch.Tensor) -> torch.Tensor:
    """A (batch, height, width, channel) uint8 batch as float32 stored channel by channel,
    seen in the same shape. facenet-pytorch's cascade permutes its input to channels first and
    casts it to float, which keeps the channels interleaved in memory; its pyramid's area
    resampling of the whole image, level after level, runs 17 % faster on planar channels (one
    thread, 1024 x 768, the same bits), and a whole detection with the networks on OpenVINO
    7 % faster, with the same answers. Not for torch's networks: its convolutions then get
    planar input too, answer up to 6e-5 px apart, and the detection is 14 % slower."""
    batch, height, width, channels = pixels.shape
    planar = torch.empty((batch, channels, height, width), dtype=torch.float32)
    planar.copy_(pixels.permute(0, 3, 1, 2))
    return planar.permute(0, 2, 3, 1)


def mtcnn_runtime(device: torch.device, options: ModelOptions) -> str:
    return cpu_network_runtime(device, options.cpu_runtime, CPU_RUNTIME)


class OpenVinoStage:
    """One MTCNN network on OpenVINO, called as facenet-pytorch's cascade calls its torch
    networks: a float32 tensor in, a tuple of tensors out; with ``share`` threads."""

    _DTYPE = torch.zeros(0)

    def __init__(self, network: Any, share: int | None = None):
        self.network = network
        self.share = share

    def parameters(self) -> Any:
        yield self._DTYPE  # the cascade reads its input dtype from the first parameter

    def with_share(self, share: int) -> OpenVinoStage:
        return OpenVinoStage(self.network, share)

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.network.run(batch.contiguous().numpy(), share=self.share)
        return tuple(torch.from_numpy(output) for output in outputs)


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
        self.model_dir = options.model_dir
        self.threads = options.torch_threads
        self.runtime = mtcnn_runtime(device, options)
        self._nets: tuple[Any, Any, Any] | None = None

    @classmethod
    def placement(cls, device: torch.device, options: ModelOptions) -> tuple[Part, ...]:
        return (Part(cls.name, mtcnn_runtime(device, options), device_name(device)),)

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
        if self.runtime == "openvino":
            nets = tuple(
                self.openvino_stage(name, net) for name, net in zip(NETWORKS, nets, strict=True)
            )
        self._nets = nets  # type: ignore[assignment]

    def openvino_stage(self, name: str, net: torch.nn.Module) -> OpenVinoStage:
        from models.runtimes.openvino import OpenVinoNetwork, cached_ir, convert_torch

        folder = package_dir("facenet_pytorch")
        assert folder is not None
        shape, free = OPENVINO_INPUTS[name]
        model = cached_ir(
            self.model_dir,
            f"mtcnn_{name}",
            sha256_of(folder / "data" / f"{name}.pt"),
            lambda: convert_torch(net, torch.zeros(shape), dynamic=[free]),
        )
        return OpenVinoStage(OpenVinoNetwork(model, self.threads, self.threads, self.model_dir))

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
        cascade_threads = torch.get_num_threads()
        if self.runtime == "openvino":
            # The networks get the call's share of the cores (that of the torch call it runs
            # in); the cascade's own torch ops run with CASCADE_THREADS (torch's networks
            # would run with it too: only with OpenVINO's).
            share = torch.get_num_threads()
            pnet, rnet, onet = (stage.with_share(share) for stage in (pnet, rnet, onet))
            pixels = planar_float(pixels)
            cascade_threads = min(share, CASCADE_THREADS)
        with torch.inference_mode(), torch_threads(cascade_threads):
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
