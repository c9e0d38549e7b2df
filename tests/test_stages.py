"""The stages every engine runs (server/pipeline/stages.py): a batch held together (the Ray
engine's actors) gives each image the pipeline's answer, never dependent on the batch, and a
bad image fails alone at whichever stage it fails."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from models.base import Analysis, Recognizer, WeightSource
from models.detect_faces.mtcnn import MtcnnFaceDetector
from models.images import DecodedImage
from server.pipeline import stages
from server.pipeline.analysis import AnalysisPipeline
from tests.conftest import encode, make_settings, model_options


class Widths(Recognizer):
    """A stand-in that answers each image's width; widths 1, 2 and 3 fail in preprocess,
    predict and postprocess."""

    type = "detect_faces"
    name = "widths"
    source = WeightSource.PACKAGED
    weights = "none"

    def __init__(self) -> None:
        super().__init__(torch.device("cpu"), model_options())

    @property
    def version(self) -> str:
        return "1"

    def load(self) -> None:
        pass

    def preprocess(self, image: DecodedImage) -> int:
        if image.rgb.width == 1:
            raise ValueError("preprocess")
        return image.rgb.width

    def batch_key(self, item: Any) -> Hashable:
        return None

    def predict(self, batch: Sequence[int]) -> list[int]:
        if 2 in batch:
            raise ValueError("predict")
        return list(batch)

    def postprocess(self, output: int, item: Any, image: Any, params: dict) -> Analysis:
        if output == 3:
            raise ValueError("postprocess")
        return Analysis([{"width": output}])


def decoded(data: bytes, settings_dir: Path, model: Any) -> DecodedImage:
    settings = make_settings(settings_dir)
    info = stages.inspect(data, settings)
    return stages.decode(model, data, info, stages.DecodeBudget.of(settings))


def test_a_bad_image_fails_alone_at_every_stage(tmp_path: Path) -> None:
    model = Widths()
    widths = [5, 1, 6, 2, 3, 7]
    images = [
        decoded(encode(Image.new("RGB", (width, 4)), "PNG"), tmp_path, model) for width in widths
    ]
    results = stages.analyse_decoded(model, "detect_faces", images, {})
    assert len(results) == len(widths)
    failed = {
        widths[i]: str(result) for i, result in enumerate(results) if isinstance(result, Exception)
    }
    assert failed == {1: "preprocess", 2: "predict", 3: "postprocess"}
    answered = [r.analysis.objects for r in results if isinstance(r, stages.PipelineResult)]
    assert answered == [[{"width": 5}], [{"width": 6}], [{"width": 7}]]


@pytest.mark.slow
def test_a_held_batch_gives_the_pipelines_answers(
    tmp_path: Path, reference_photos: dict[str, Image.Image]
) -> None:
    settings = make_settings(tmp_path / "data")
    files = [encode(photo.resize((320, 240))) for photo in reference_photos.values()]
    model = MtcnnFaceDetector(torch.device("cpu"), settings.model_options())
    model.load()
    images = [decoded(data, tmp_path / "data", model) for data in files]
    together = stages.analyse_decoded(model, "detect_faces", images, {})
    alone = [stages.analyse_decoded(model, "detect_faces", [image], {})[0] for image in images]

    async def through_the_pipeline() -> list[dict]:
        pipeline = AnalysisPipeline(settings, torch.device("cpu"))
        try:
            return [(await pipeline.analyze(data, "detect_faces", {})).data() for data in files]
        finally:
            await pipeline.close()

    expected = asyncio.run(through_the_pipeline())
    assert [r.data() for r in together] == [r.data() for r in alone] == expected  # type: ignore
    assert any(answer["objects"] for answer in expected)  # faces found: a real comparison
