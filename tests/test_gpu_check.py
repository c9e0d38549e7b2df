"""scripts/gpu_check.py, the GPU acceptance run, as far as a CPU allows: the same command with
``--device cpu`` and a 2-minute budget writes the same files, every step measured or listed
as not measured with its reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import gpu_check

STEPS = [
    ("install", None),
    ("cuda tests", None),
    ("models list", None),
    ("cpu runtimes", "nsfw"),
    ("raw pipeline", "nsfw"),
    ("server over HTTP", "nsfw"),
    ("half precision", "nsfw"),
    ("decode", None),
]


@pytest.mark.slow
def test_the_run_on_the_cpu_writes_every_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        "bash", str(ROOT / "scripts/gpu_check.sh"), str(out), "--device", "cpu",
        "--budget-s", "120", "--types", "nsfw", "--batch-sizes", "1", "2",
        "--concurrency", "1", "4", "--requests", "8", "--work", str(tmp_path / "work"),
        "--pytest-args=-k 'stack_to_device_on_cpu or half_precision_names'",
    ]  # fmt: skip
    env = dict(os.environ, PYTHON=sys.executable)  # the wrapper's interpreter: this one
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for name in ("summary.json", "summary.md", "log.txt", "pytest.txt", "models-list.txt"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["gpu_util_source"] == "n/a"
    listed = [(entry["step"], entry["type"]) for entry in summary["steps"]]
    assert listed == STEPS
    by_step = {entry["step"]: entry for entry in summary["steps"]}
    for entry in summary["steps"]:
        assert entry["status"] in (gpu_check.MEASURED, gpu_check.NOT_MEASURED), entry
        if entry["status"] == gpu_check.NOT_MEASURED:
            assert entry["reason"], entry
    # The first steps always fit in the budget; half precision is CUDA's alone.
    assert by_step["cuda tests"]["status"] == gpu_check.MEASURED
    assert by_step["cuda tests"]["counts"]["passed"] >= 2
    assert by_step["models list"]["placements"]["nsfw"] == "open_nsfw: onnxruntime on cpu"
    assert "CUDA only" in by_step["half precision"]["reason"]
    raw = by_step["raw pipeline"]
    if raw["status"] == gpu_check.MEASURED:
        assert set(raw["by_batch"]) == {"1", "2"}
        assert all(r["images_per_s"] > 0 for r in raw["by_batch"].values())
    http = by_step["server over HTTP"]
    if http["status"] == gpu_check.MEASURED:
        assert [r["concurrency"] for r in http["levels"]] == [1, 4]
        assert all(r["ok"] == r["requests"] == 8 for r in http["levels"])
    table = (out / "summary.md").read_text()
    assert table.count("\n| ") == len(STEPS) + 1  # the heading row and one row per step
    assert "not measured" in table


def test_half_precision_answers_are_compared_within_the_tolerances() -> None:
    reference = {"a": {"output": 0.4210, "answer": {}}, "b": {"output": 0.9, "answer": {}}}
    close = {"a": {"output": 0.4240, "answer": {}}, "b": {"output": 0.9, "answer": {}}}
    apart = {"a": {"output": 0.4300, "answer": {}}, "b": {"output": 0.9, "answer": {}}}
    assert gpu_check.compare("nsfw", reference, close)["within"]
    verdict = gpu_check.compare("nsfw", reference, apart)
    assert not verdict["within"] and verdict["problems"] == ["a: score 0.900 points apart"]
    face = {"box": {"left": 100, "top": 50, "width": 80, "height": 90}, "confidence": 99.5}
    moved = dict(face, box=dict(face["box"], left=130))
    faces = {"p": {"output": None, "answer": {"objects": [face]}}}
    assert gpu_check.compare("detect_faces", faces, faces)["within"]
    shifted = {"p": {"output": None, "answer": {"objects": [moved]}}}
    assert not gpu_check.compare("detect_faces", faces, shifted)["within"]  # 30 px of 1024
    none = {"p": {"output": None, "answer": {"objects": []}}}
    assert not gpu_check.compare("detect_faces", faces, none)["within"]


def test_placements_are_read_from_models_list() -> None:
    listing = (
        "type  model ...\n\nwhere each served type computes (device cuda:0):\n"
        "  nsfw           open_nsfw                    torch on cuda:0\n"
        "  celebrities    dlib_resnet                  mtcnn: torch on cuda:0, dlib_resnet: torch"
        " on cuda:0\n\nfetchable weights:\n  nsfw_other   missing  not a placement\n"
    )
    assert gpu_check.placements(listing) == {
        "nsfw": "open_nsfw: torch on cuda:0",
        "celebrities": "dlib_resnet: mtcnn: torch on cuda:0, dlib_resnet: torch on cuda:0",
    }
