"""detect_text: PP-OCRv4 detection and recognition with the PP-OCR angle classifier, the
three ONNX files inside `rapidocr-onnxruntime`, run through ONNX Runtime with our own
stages: the crops of all images of a batch are recognised together, one call per width
bucket."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from models.base import Analysis, Part, Recognizer, WeightSource
from models.common import box_dict, confidence, package_dir
from models.detect_text.ppocr_stages import (
    CLS_THRESHOLD,
    CLS_WIDTH,
    REC_HEIGHT,
    TextBox,
    crop_quad,
    ctc_decode,
    db_boxes,
    group_lines,
    normalise_bgr,
    rec_width,
)
from models.images import DecodedImage
from models.options import ModelOptions
from models.runtimes.onnx_port import (
    Network,
    Runtime,
    choose_runtime,
    load_network,
    network_part,
    onnx_metadata,
)

DET_FILE = "ch_PP-OCRv4_det_infer.onnx"
REC_FILE = "ch_PP-OCRv4_rec_infer.onnx"
CLS_FILE = "ch_ppocr_mobile_v2.0_cls_infer.onnx"
# Longest crop fed to the recogniser, as a multiple of its height (longer lines are squeezed).
MAX_REC_RATIO = 40
REC_BUCKETS = (320, 480, 640, 960, 1280, 1920)


def rec_bucket(width: int) -> int:
    """The padded width of a recogniser input ``width`` pixels wide."""
    return next((bucket for bucket in REC_BUCKETS if width <= bucket), REC_BUCKETS[-1])


# Lines read with less confidence are dropped (RapidOCR's default too): below it, readings
# are mostly texture taken for letters.
MIN_LINE_CONFIDENCE = 0.5


@dataclass(frozen=True)
class TextInput:
    image: Image.Image  # the (possibly draft-decoded) RGB image
    det: np.ndarray  # 3 x H x W, H and W multiples of 32


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float
    quad: np.ndarray  # in the input image's pixels


class TextReader(Recognizer):
    """What every detect_text model shares: lines merged from boxes on one baseline, and the
    API's text objects in displayed-image pixels."""

    type: ClassVar[str] = "detect_text"
    # Detection of several pages at once is slower per page on CPU (docs/performance.md).
    cpu_batch_size: ClassVar[int] = 1

    @staticmethod
    def merge_lines(boxes: list[TextBox]) -> list[TextLine]:
        lines = []
        for group in group_lines(boxes):
            text = " ".join(box.text.strip() for box in group)
            score = float(np.mean([box.confidence for box in group]))
            if len(group) == 1:
                quad = group[0].quad
            else:
                first, last = group[0].quad, group[-1].quad
                quad = np.array([first[0], last[1], last[2], first[3]], dtype=np.float32)
            lines.append(TextLine(text, score, quad))
        return lines

    def postprocess(
        self,
        output: list[TextLine],
        item: Any,
        image: DecodedImage,
        params: dict[str, Any],
    ) -> Analysis:
        scale = image.scale
        width, height = image.info.width, image.info.height
        objects = []
        for line in output:
            quad = line.quad / scale
            xs, ys = quad[:, 0], quad[:, 1]
            objects.append(
                {
                    "text": line.text,
                    "confidence": confidence(line.confidence),
                    "box": box_dict(xs.min(), ys.min(), xs.max(), ys.max(), width, height),
                    "polygon": [
                        [min(max(round(x), 0), width), min(max(round(y), 0), height)]
                        for x, y in quad.tolist()
                    ],
                }
            )
        return Analysis(objects, {"text": "\n".join(line["text"] for line in objects)})


class PpOcrV4TextReader(TextReader):
    name: ClassVar[str] = "pp_ocrv4"
    source: ClassVar[WeightSource] = WeightSource.PACKAGED
    uses_torch: ClassVar[bool] = False
    concurrent_calls: ClassVar[bool] = True  # ONNX Runtime sessions are thread-safe
    # The runtime on CPU (on CUDA: the torch ports): OpenVINO reading the ONNX files, measured
    # x1.65 (detector) and x1.4-1.5 (recogniser) faster than ONNX Runtime, outputs within 5e-5
    # (docs/performance.md); ONNX Runtime with IMAGERECOGNIZE_CPU_RUNTIME=torch.
    cpu_runtime: ClassVar[Runtime] = Runtime.OPENVINO

    @classmethod
    def runtime_for(cls, device: torch.device, options: ModelOptions) -> Runtime:
        default = Runtime.ONNXRUNTIME if options.cpu_runtime == "torch" else cls.cpu_runtime
        return choose_runtime(device, options.onnx.cpu_runtime, default)
    weights: ClassVar[str] = (
        "rapidocr_onnxruntime/models/{ch_PP-OCRv4_det_infer,ch_PP-OCRv4_rec_infer,"
        "ch_ppocr_mobile_v2.0_cls_infer}.onnx (package rapidocr-onnxruntime)"
    )

    @classmethod
    def placement(cls, device: torch.device, options: ModelOptions) -> tuple[Part, ...]:
        runtime = cls.runtime_for(device, options)
        return tuple(
            network_part(name, runtime, device) for name in ("detector", "classifier", "recogniser")
        )

    def __init__(self, device: torch.device, options: ModelOptions):
        super().__init__(device, options)
        self.max_side = options.text_max_side
        self.threads = options.onnx.threads
        self.instances = options.onnx.instances
        # Crops are cut from the decoded image: twice the detector's size keeps them sharp.
        self.input_max_side = 2 * self.max_side
        self.model_dir = options.model_dir
        self.runtime = self.runtime_for(device, options)
        self._networks: dict[str, Network] = {}
        self.characters: list[str] = []

    @staticmethod
    def folder() -> Path | None:
        folder = package_dir("rapidocr_onnxruntime")
        return None if folder is None else folder / "models"

    @classmethod
    def weights_present(cls, model_dir: Path) -> bool:
        folder = cls.folder()
        return folder is not None and all(
            (folder / name).is_file() for name in (DET_FILE, REC_FILE, CLS_FILE)
        )

    @property
    def version(self) -> str:
        return f"ch_PP-OCRv4_det+ch_PP-OCRv4_rec+ch_ppocr_mobile_v2.0_cls/max{self.max_side}"

    def load(self) -> None:
        folder = self.folder()
        if folder is None:
            raise FileNotFoundError("PP-OCR models not found: install rapidocr-onnxruntime")
        for key, name in (("det", DET_FILE), ("rec", REC_FILE), ("cls", CLS_FILE)):
            self._networks[key] = load_network(
                folder / name, self.device, self.runtime, self.model_dir, self.threads,
                self.instances,
            )
        meta = onnx_metadata(folder / REC_FILE)
        # CTC classes: blank, the dictionary kept in the model's metadata, then the space.
        self.characters = ["", *meta["character"].splitlines(), " "]

    @property
    def runs_torch(self) -> bool:
        return self.runtime is Runtime.TORCH

    def unload(self) -> None:
        self._networks = {}
        super().unload()

    def _run(self, key: str, batch: np.ndarray) -> np.ndarray:
        return self._networks[key].run(batch)

    def preprocess(self, image: DecodedImage) -> TextInput:
        rgb = image.rgb
        scale = min(1.0, self.max_side / max(rgb.size))
        width = max(32, round(rgb.width * scale / 32) * 32)
        height = max(32, round(rgb.height * scale / 32) * 32)
        resized = rgb.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(resized, dtype=np.float32)[:, :, ::-1] / 255.0  # BGR
        det = ((pixels - 0.5) / 0.5).transpose(2, 0, 1)
        return TextInput(rgb, np.ascontiguousarray(det, dtype=np.float32))

    def batch_key(self, item: TextInput) -> Hashable:
        return item.det.shape

    def predict(self, batch: Sequence[TextInput]) -> list[list[TextLine]]:
        if not self._networks:
            raise RuntimeError("model not loaded")
        maps = self._run("det", np.stack([item.det for item in batch]))[:, 0]
        crops: list[Image.Image] = []
        owners: list[tuple[int, np.ndarray]] = []
        for index, (item, probability) in enumerate(zip(batch, maps, strict=True)):
            height, width = probability.shape
            quads = db_boxes(
                probability,
                item.image.width / width,
                item.image.height / height,
                item.image.width,
                item.image.height,
            )
            for quad in quads:
                crops.append(crop_quad(item.image, quad))
                owners.append((index, quad))
        texts = self.read_lines(crops)
        results: list[list[TextBox]] = [[] for _ in batch]
        for (index, quad), (text, score) in zip(owners, texts, strict=True):
            if text.strip() and score >= MIN_LINE_CONFIDENCE:
                results[index].append(TextBox(quad, text, score))
        return [self.merge_lines(boxes) for boxes in results]

    def read_lines(self, crops: list[Image.Image]) -> list[tuple[str, float]]:
        """Angle classification, then ONE recognition call over every crop. A crop the
        classifier calls upside down is read both ways in that call, and the more confident
        reading wins: on long lines squeezed into its 192 px input the classifier errs."""
        if not crops:
            return []
        angles = self._run(
            "cls",
            np.stack(
                [
                    normalise_bgr(crop, rec_width(crop, max_width=CLS_WIDTH), CLS_WIDTH)
                    for crop in crops
                ]
            ),
        )
        candidates: list[Image.Image] = []
        owners: list[int] = []
        for index, (crop, angle) in enumerate(zip(crops, angles, strict=True)):
            candidates.append(crop)
            owners.append(index)
            if angle[1] > CLS_THRESHOLD:
                candidates.append(crop.transpose(Image.Transpose.ROTATE_180))
                owners.append(index)
        readings = self.recognise(candidates)
        best: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for owner, (text, score) in zip(owners, readings, strict=True):
            if text and score > best[owner][1]:
                best[owner] = (text, score)
        return best

    def recognise(self, crops: list[Image.Image]) -> list[tuple[str, float]]:
        """Every crop of the batch, batched by width bucket: a crop is padded to its bucket
        only, so its reading never depends on the other crops of the batch, and short lines
        do not pay for the longest one."""
        widths = [rec_width(crop, max_width=MAX_REC_RATIO * REC_HEIGHT) for crop in crops]
        buckets: dict[int, list[int]] = {}
        for index, width in enumerate(widths):
            buckets.setdefault(rec_bucket(width), []).append(index)
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for pad_to, members in buckets.items():
            inputs = np.stack([normalise_bgr(crops[i], widths[i], pad_to) for i in members])
            probabilities = self._run("rec", inputs)
            frames_per_pixel = probabilities.shape[1] / pad_to
            for i, probability in zip(members, probabilities, strict=True):
                frames = min(probability.shape[0], int(np.ceil(widths[i] * frames_per_pixel)) + 1)
                line = ctc_decode(probability, self.characters, frames)
                out[i] = (line.text, line.confidence)
        return out
