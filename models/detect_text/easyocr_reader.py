"""detect_text, fetched: EasyOCR's CRAFT detector (`craft_mlt_25k.pth`) and its second
generation English recogniser (`english_g2.pth`), read from the model folder.

EasyOCR's ``Reader`` would download missing files and refuses any file whose md5 differs
from the one in its own table. Here the Reader is created without its networks, so it never
looks at the files, and the two networks are built from the model folder with EasyOCR's own
loaders; the files themselves are checked when `imagerecognize models fetch` stores them.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import WeightSource
from models.common import package_version
from models.detect_text.ppocr import TextLine, TextReader
from models.detect_text.ppocr_stages import TextBox
from models.images import DecodedImage
from models.options import ModelOptions
from models.weights.fetch import manifest_entry

DETECTOR_MANIFEST_NAME = "easyocr_craft_mlt_25k"
RECOGNISER_MANIFEST_NAME = "easyocr_english_g2"
# EasyOCR's settings for its generation-2 recognisers (`Reader.__init__`).
RECOGNISER_NETWORK = "generation2"
RECOGNISER_PARAMS = {"input_channel": 1, "output_channel": 256, "hidden_size": 256}
# Crops recognised per network call (EasyOCR's ``batch_size``).
RECOGNISER_BATCH = 16

# EasyOCR's crop loader asks for pinned memory on every call; on CPU torch warns each time.
warnings.filterwarnings("ignore", message="'pin_memory' argument is set", category=UserWarning)


@dataclass(frozen=True)
class EasyOcrInput:
    rgb: np.ndarray  # H x W x 3 uint8: what CRAFT reads
    grey: np.ndarray  # H x W uint8: what the recogniser reads


class EasyOcrTextReader(TextReader):
    name: ClassVar[str] = "easyocr"
    source: ClassVar[WeightSource] = WeightSource.FETCHED
    weights: ClassVar[str] = (
        "model folder: craft_mlt_25k.pth, english_g2.pth "
        "(`imagerecognize models fetch easyocr_craft_mlt_25k easyocr_english_g2`)"
    )
    # Served only when chosen with IMAGERECOGNIZE_TEXT_MODEL=easyocr: the packaged PP-OCRv4
    # reads rendered English with fewer errors and faster.
    preference: ClassVar[int] = -10

    def __init__(self, device: torch.device, options: ModelOptions):
        super().__init__(device, options)
        self.model_dir = options.model_dir
        # CRAFT's canvas: the longest side it looks at (EasyOCR's ``canvas_size``).
        self.max_side = options.text_max_side
        # The recogniser reads crops of the decoded image: keep them sharper than the canvas.
        self.input_max_side = 2 * self.max_side
        self._reader: Any = None

    @classmethod
    def weights_files(cls, model_dir: Path) -> list[Path]:
        return [
            model_dir / manifest_entry(name).filename
            for name in (DETECTOR_MANIFEST_NAME, RECOGNISER_MANIFEST_NAME)
        ]

    @classmethod
    def weights_present(cls, model_dir: Path) -> bool:
        return all(path.is_file() for path in cls.weights_files(model_dir))

    @property
    def version(self) -> str:
        files = "+".join(path.name for path in self.weights_files(self.model_dir))
        return f"easyocr-{package_version('easyocr')}/{files}/max{self.max_side}"

    def load(self) -> None:
        import easyocr
        from easyocr.detection import get_detector, get_textbox
        from easyocr.recognition import get_recognizer

        detector_path, recogniser_path = self.weights_files(self.model_dir)
        missing = [path for path in (detector_path, recogniser_path) if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{', '.join(map(str, missing))} missing: run `imagerecognize models fetch "
                f"{DETECTOR_MANIFEST_NAME} {RECOGNISER_MANIFEST_NAME}`"
            )
        device = "cpu" if self.device.type == "cpu" else str(self.device)
        # The Reader appends its network folder to sys.path; nothing of ours lives there.
        saved_path = list(sys.path)
        try:
            reader = easyocr.Reader(
                ["en"],
                gpu=device,
                model_storage_directory=str(self.model_dir),
                user_network_directory=str(self.model_dir),
                download_enabled=False,
                detector=False,
                recognizer=False,
                verbose=False,
            )
        finally:
            sys.path[:] = saved_path
        # Full precision: EasyOCR's default int8 quantisation on CPU changes its readings.
        reader.detector = get_detector(str(detector_path), device, quantize=False)
        reader.get_textbox = get_textbox  # what the Reader's own detector setup would set
        dictionaries = {"en": str(Path(easyocr.__file__).parent / "dict" / "en.txt")}
        reader.recognizer, reader.converter = get_recognizer(
            RECOGNISER_NETWORK,
            RECOGNISER_PARAMS,
            reader.character,
            {},
            dictionaries,
            str(recogniser_path),
            device=device,
            quantize=False,
        )
        reader.recognizer.eval()
        self._reader = reader

    def unload(self) -> None:
        self._reader = None
        super().unload()

    def preprocess(self, image: DecodedImage) -> EasyOcrInput:
        rgb = image.rgb
        return EasyOcrInput(np.asarray(rgb, dtype=np.uint8), np.asarray(rgb.convert("L")))

    def batch_key(self, item: EasyOcrInput) -> Hashable:
        # CRAFT reads a batch as one array: only equal sizes share a call.
        return item.rgb.shape

    def predict(self, batch: Sequence[EasyOcrInput]) -> list[list[TextLine]]:
        reader = self._reader
        if reader is None:
            raise RuntimeError("model not loaded")
        with torch.inference_mode():
            horizontal, free = reader.detect(
                np.stack([item.rgb for item in batch]),
                canvas_size=self.max_side,
                reformat=False,
            )
            results = []
            for item, boxes, tilted in zip(batch, horizontal, free, strict=True):
                readings = reader.recognize(
                    item.grey,
                    boxes,
                    tilted,
                    batch_size=RECOGNISER_BATCH,
                    workers=0,
                    reformat=False,
                )
                found = [
                    TextBox(np.asarray(quad, dtype=np.float32), text, float(score))
                    for quad, text, score in readings
                    if text.strip()
                ]
                results.append(self.merge_lines(found))
        return results
