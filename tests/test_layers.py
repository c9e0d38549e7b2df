"""The layers point one way: models/ is usable without server/, and the pipeline without HTTP,
keys, quota or storage."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from models.images import ImageError, ImageErrorKind
from server.pipeline.analysis import AnalysisPipeline
from server.settings import Settings
from tests.conftest import ROOT, encode


def test_models_import_nothing_from_server() -> None:
    code = (
        "import sys, models.registry, models.images, models.options\n"
        "from models.registry import all_models\n"
        "assert len(all_models()) >= 8\n"
        "print(sorted(m for m in sys.modules if m == 'server' or m.startswith('server.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_unknown_model_names_are_refused() -> None:
    from models.registry import UnknownModelError, default_model

    with pytest.raises(UnknownModelError, match="known: "):
        default_model("objects", "yolo", Path("."))
    with pytest.raises(UnknownModelError):
        default_model("captions", None, Path("."))


@pytest.mark.slow
def test_pipeline_analyses_without_http(tmp_path: Path, astronaut: Image.Image) -> None:
    # Fix this thread's torch thread count before the pipeline's pools set theirs: torch gives
    # a thread its count on first use, from whichever thread set one last (runtimes/device.py),
    # and the int8 classifier's scores in later tests depend on it.
    torch.get_num_threads()

    async def scenario() -> tuple[dict, ImageErrorKind]:
        pipeline = AnalysisPipeline(Settings(data_dir=tmp_path / "data"))
        try:
            result = await pipeline.analyze(encode(astronaut), "detect_faces", {})
            with pytest.raises(ImageError) as refused:
                await pipeline.analyze(b"GIF89a not ours", "detect_faces", {})
            return result.data(), refused.value.kind
        finally:
            await pipeline.close()

    data, refused = asyncio.run(scenario())
    assert data["type"] == "detect_faces" and len(data["objects"]) == 1
    assert data["model"]["name"] == "mtcnn" and data["image"]["width"] == astronaut.width
    assert not {"quota", "id", "cached", "elapsed_ms"} & set(data)
    assert refused is ImageErrorKind.UNSUPPORTED_FORMAT
