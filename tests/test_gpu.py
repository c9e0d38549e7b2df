"""Where each model computes, IMAGERECOGNIZE_REQUIRE_GPU, and the CUDA code paths (pinned
host buffers, half precision), which must leave CPU results exactly as they were.

Tests marked ``cuda`` run only where torch sees a CUDA device."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import models.registry as registry
from models.base import Part, Recognizer, WeightSource
from models.detect_faces.mtcnn import MtcnnFaceDetector
from models.images import decode_image, inspect_image
from models.nsfw.open_nsfw import OpenNsfwClassifier
from models.runtimes.device import stack_to_device, tensor_to_device
from server.pipeline import placement
from server.pipeline.batching import run_batch
from tests.conftest import ROOT, make_settings, run_cli

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CPU = torch.device("cpu")
CUDA0 = torch.device("cuda:0")


def test_every_served_model_says_where_it_computes(tmp_path: Path) -> None:
    served = {s.type: s for s in placement.served_models(make_settings(tmp_path), CPU)}
    assert served["detect_faces"].parts == (Part("mtcnn", "openvino", "cpu"),)
    assert served["nsfw"].parts == (Part("open_nsfw", "onnxruntime", "cpu"),)
    assert {p.runtime for p in served["detect_text"].parts} == {"openvino"}
    assert served["celebrities"].parts[1] == Part("dlib_resnet", "openvino", "cpu")
    assert [p.runtime for p in served["objects"].parts] == ["openvino", "litert"]
    # IMAGERECOGNIZE_CPU_RUNTIME=torch: the paths from before OpenVINO and LiteRT.
    before = {
        s.type: s
        for s in placement.served_models(make_settings(tmp_path, cpu_runtime="torch"), CPU)
    }
    assert before["detect_faces"].parts == (Part("mtcnn", "torch", "cpu"),)
    assert {p.runtime for p in before["detect_text"].parts} == {"onnxruntime"}
    assert {p.runtime for p in before["objects"].parts} == {"torch"}
    assert before["celebrities"].parts[1] == Part("dlib_resnet", "torch", "cpu")
    ported = placement.served_models(make_settings(tmp_path, onnx_cpu_runtime="torch"), CPU)
    assert {p.runtime for s in ported if s.type == "nsfw" for p in s.parts} == {"torch"}


def test_on_cuda_every_model_runs_in_torch(tmp_path: Path) -> None:
    # Known from the settings alone: nothing is loaded, so this runs without a GPU too.
    asked = make_settings(
        tmp_path, onnx_cpu_runtime="onnxruntime", celebrities_descriptor_runtime="dlib"
    )
    for served in placement.served_models(asked, CUDA0):
        assert served.parts and all(p.runtime == "torch" for p in served.parts), served
        assert all(p.device == "cuda:0" for p in served.parts), served


def test_require_gpu_refuses_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert placement.gpu_requirement_problem(make_settings(tmp_path)) is None  # not asked
    monkeypatch.setattr(placement, "choose_device", lambda _requested: CPU)
    problem = placement.gpu_requirement_problem(make_settings(tmp_path, require_gpu=True))
    assert problem is not None and problem.startswith("IMAGERECOGNIZE_REQUIRE_GPU is set, but")
    cpu_asked = placement.gpu_requirement_problem(
        make_settings(tmp_path, require_gpu=True, device="cpu")
    )
    assert cpu_asked is not None and "IMAGERECOGNIZE_DEVICE is 'cpu'" in cpu_asked


def test_require_gpu_names_a_model_that_would_stay_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if CUDA were present, and the nsfw model could compute only on the CPU.
    class CpuOnlyNsfw(OpenNsfwClassifier):
        @classmethod
        def placement(cls, device, options):
            return (Part("open_nsfw", "onnxruntime", "cpu"),)

    monkeypatch.setattr(placement, "choose_device", lambda _requested: CUDA0)
    assert placement.gpu_requirement_problem(make_settings(tmp_path, require_gpu=True)) is None
    real_default = registry.default_model  # what Settings.model_class asks

    def with_cpu_only_nsfw(type_, configured, model_dir):
        return CpuOnlyNsfw if type_ == "nsfw" else real_default(type_, configured, model_dir)

    monkeypatch.setattr(registry, "default_model", with_cpu_only_nsfw)
    problem = placement.gpu_requirement_problem(make_settings(tmp_path, require_gpu=True))
    assert problem is not None
    assert "nsfw (open_nsfw: open_nsfw: onnxruntime on cpu)" in problem
    assert "detect_faces" not in problem


@pytest.mark.slow
def test_models_list_says_where_each_type_computes(tmp_path: Path) -> None:
    listing = run_cli(tmp_path, "models", "list").stdout
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    runtime = "torch" if device != "cpu" else "openvino"
    assert f"mtcnn                        {runtime} on {device}" in listing
    if device == "cpu":
        assert "detector: openvino on cpu, classifier: litert on cpu" in listing
        assert "open_nsfw                    onnxruntime on cpu" in listing


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the refusal on a machine without CUDA")
def test_serve_and_app_refuse_without_cuda_when_a_gpu_is_required(tmp_path: Path) -> None:
    env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(tmp_path), IMAGERECOGNIZE_REQUIRE_GPU="true")
    # No device named (scripts/gpu_check.py --device cpu runs these tests with one): the
    # refusal for a machine without CUDA, not the one for a device other than CUDA.
    env.pop("IMAGERECOGNIZE_DEVICE", None)
    expected = "error: IMAGERECOGNIZE_REQUIRE_GPU is set, but no CUDA device is available"
    serve = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--port", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert serve.returncode == 1
    assert serve.stderr.strip().splitlines() == [serve.stderr.strip()]  # one line
    assert serve.stderr.startswith(expected)
    # Started by uvicorn itself (the app factory): the same line, no traceback.
    factory = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "server.http.app:create_app", "--port", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert factory.returncode == 1
    assert factory.stderr.strip().startswith(expected) and "Traceback" not in factory.stderr


def test_stack_to_device_on_cpu_is_the_plain_stack() -> None:
    arrays = [np.full((3, 4, 3), i, dtype=np.uint8) for i in range(3)]
    batch = stack_to_device(arrays, CPU)
    assert batch.dtype == torch.uint8 and not batch.is_pinned()
    assert np.array_equal(batch.numpy(), np.stack(arrays))
    tensor = torch.arange(6.0)
    assert tensor_to_device(tensor, CPU) is tensor


def test_half_precision_is_off_on_the_cpu(tmp_path: Path, astronaut_jpeg: bytes) -> None:
    # Configured, yet on the CPU: no autocast, and the answer is the float32 one exactly.
    options = make_settings(tmp_path, half_precision={"detect_faces": "fp16"}).model_options()
    assert options.half_precision == {"detect_faces": "fp16"}
    model = MtcnnFaceDetector(CPU, options)
    assert model.half_precision is None
    plain = MtcnnFaceDetector(CPU, make_settings(tmp_path).model_options())
    model.load()
    plain.load()
    image = decode_image(astronaut_jpeg, inspect_image(astronaut_jpeg, 10**8))
    (ours,) = run_batch(model, [model.preprocess(image)])
    (reference,) = plain.predict([plain.preprocess(image)])
    assert [f.box.tolist() for f in ours] == [f.box.tolist() for f in reference]


def test_half_precision_names_only_known_types_and_dtypes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_settings(tmp_path, half_precision={"detect_faces": "fp8"})
    with pytest.raises(ValueError):
        make_settings(tmp_path, half_precision={"faces": "fp16"})


@cuda
def test_stack_to_device_copies_through_pinned_memory_on_cuda() -> None:
    arrays = [np.random.default_rng(i).random((5, 7, 3), dtype=np.float32) for i in range(4)]
    batch = stack_to_device(arrays, CUDA0)
    assert batch.device.type == "cuda" and batch.dtype == torch.float32
    # Kernels on the stream wait for the non-blocking copy; reading back synchronises.
    assert np.array_equal((batch * 1).cpu().numpy(), np.stack(arrays))
    moved = tensor_to_device(torch.from_numpy(arrays[0]), CUDA0)
    assert np.array_equal(moved.cpu().numpy(), arrays[0])


class ConvProbe(Recognizer):
    """One convolution, answering the dtype its output had inside the batch's call."""

    type = "detect_faces"
    name = "conv_probe"
    source = WeightSource.PACKAGED
    weights = "none"
    version = "1"

    def load(self) -> None:
        self.conv = torch.nn.Conv2d(3, 4, 3).to(self.device)

    def preprocess(self, image):
        return image

    def predict(self, batch):
        pixels = stack_to_device(batch, self.device)
        return [str(self.conv(pixels).dtype)] * len(batch)

    def postprocess(self, output, item, image, params):
        raise NotImplementedError


@cuda
@pytest.mark.parametrize(("precision", "dtype"), [("fp16", "float16"), ("bf16", "bfloat16")])
def test_half_precision_autocasts_the_batch_on_cuda(
    tmp_path: Path, precision: str, dtype: str
) -> None:
    items = [np.zeros((3, 8, 8), dtype=np.float32)] * 2
    halved = make_settings(tmp_path, half_precision={"detect_faces": precision})
    half = ConvProbe(CUDA0, halved.model_options())
    full = ConvProbe(CUDA0, make_settings(tmp_path).model_options())
    for model in (half, full):
        model.load()
    assert run_batch(half, items) == [f"torch.{dtype}"] * 2
    assert run_batch(full, items) == ["torch.float32"] * 2
    assert not torch.is_autocast_enabled("cuda")  # only inside the batch's call
