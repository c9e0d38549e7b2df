"""The CPU runtimes (OpenVINO, LiteRT) against today's torch and ONNX Runtime paths on the
reference photos, with the tolerances of the tests of those paths; the conversions kept in
the model folder; the runtime each network reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.celebrities.dlib_faces import DlibFaceRecognizer
from models.detect_faces.mtcnn import MtcnnFaceDetector
from models.detect_text.ppocr import PpOcrV4TextReader
from models.images import decode_image, inspect_image
from models.objects.ssd_mobilenet import SsdMobileNetV2Detector
from models.runtimes.onnx_port import Runtime
from scripts.rendered_text import render_pages
from server.settings import Settings
from tests.conftest import encode, model_options

CPU = torch.device("cpu")


def loaded(model_class, model_dir: Path, cpu_runtime: str, **overrides: object):
    model = model_class(CPU, model_options(model_dir, cpu_runtime=cpu_runtime, **overrides))
    model.load()
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def item_of(model, photo: Image.Image, fmt: str = "PNG"):
    data = encode(photo.convert("RGB"), fmt)
    return model.preprocess(decode_image(data, inspect_image(data, 10**9), model.input_max_side))


def test_each_network_reports_its_runtime() -> None:
    """`imagerecognize models list` and the start-up log show these (placement)."""
    auto, torch_only = model_options(), model_options(cpu_runtime="torch")
    assert [str(p) for p in SsdMobileNetV2Detector.placement(CPU, auto)] == [
        "detector: openvino on cpu",
        "classifier: litert on cpu",
    ]
    assert [p.runtime for p in SsdMobileNetV2Detector.placement(CPU, torch_only)] == [
        "torch",
        "torch",
    ]
    assert [p.runtime for p in MtcnnFaceDetector.placement(CPU, auto)] == ["openvino"]
    assert [p.runtime for p in DlibFaceRecognizer.placement(CPU, auto)] == ["openvino"] * 2
    assert [p.runtime for p in DlibFaceRecognizer.placement(CPU, torch_only)] == ["torch"] * 2
    assert {p.runtime for p in PpOcrV4TextReader.placement(CPU, auto)} == {"openvino"}
    assert {p.runtime for p in PpOcrV4TextReader.placement(CPU, torch_only)} == {"onnxruntime"}
    # On CUDA torch always runs (constructing placements touches no device).
    cuda = torch.device("cuda", 0)
    for model_class in (SsdMobileNetV2Detector, MtcnnFaceDetector, DlibFaceRecognizer):
        assert {(p.runtime, p.device) for p in model_class.placement(cuda, auto)} == {
            ("torch", "cuda:0")
        }
    with pytest.raises(ValueError):
        Settings(cpu_runtime="openvino")


@pytest.mark.slow
def test_objects_on_openvino_and_litert_answer_as_torch(
    model_dir: Path, reference_photos: dict[str, Image.Image]
) -> None:
    """SSD's scores and boxes within 1e-4 of the torch port's (tests/test_objects.py's bound
    between a batch and single calls), the same detections; the classifier's probabilities
    are the TFLite file's own, checked against the interpreter directly."""
    from ai_edge_litert.interpreter import Interpreter

    fast = loaded(SsdMobileNetV2Detector, model_dir, "auto")
    today = loaded(SsdMobileNetV2Detector, model_dir, "torch", compile=False)
    assert fast.detector_runtime == "openvino" and fast.classifier.runtime == "litert"
    assert today.classifier.net is not None and fast.classifier.net is None
    tflite = fast.classifier.folder() / "efficientnet_lite3.tflite"
    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = target["quantization"]
    items = [item_of(fast, photo) for photo in reference_photos.values()]
    together = fast.predict(items)
    agree = 0
    for name, item, in_batch in zip(reference_photos, items, together, strict=True):
        (got,) = fast.predict([item])
        (expected,) = today.predict([item_of(today, reference_photos[name])])
        assert torch.allclose(got.detections.scores, expected.detections.scores, atol=1e-4)
        assert torch.allclose(got.detections.boxes, expected.detections.boxes, atol=1e-4)
        assert [d.label for d in got.detections.select(0.3)] == [
            d.label for d in expected.detections.select(0.3)
        ], name
        # A batch answers as single calls.
        assert torch.allclose(in_batch.detections.scores, got.detections.scores, atol=1e-4)
        assert in_batch.classes == got.classes
        # The classifier: the interpreter's own probabilities.
        interpreter.set_tensor(source["index"], item.classifier[None])
        interpreter.invoke()
        reference = (interpreter.get_tensor(target["index"])[0].astype(np.float32) - zero) * scale
        # (Its probabilities are on a grid of 1/256: ties may come in either order.)
        labels = fast.classifier.labels
        assert np.allclose([p for _, p in got.classes], np.sort(reference)[::-1][:5], atol=1e-6)
        for label, probability in got.classes:
            assert any(  # (a few labels name two classes: "crane", "maillot")
                abs(reference[index] - probability) < 1e-6
                for index, name in enumerate(labels)
                if name == label
            ), (label, probability)
        agree += got.classes[0][0] == expected.classes[0][0]
    # The torch port emulates the int8 graph: the rocket's projectile/missile are near-tied.
    assert agree >= 6


@pytest.mark.slow
def test_litert_answers_do_not_depend_on_the_calls_threads(
    model_dir: Path, reference_photos: dict[str, Image.Image]
) -> None:
    """A call given one thread (beside another, server/pipeline/torch_calls.py) runs on a
    one-thread interpreter and OpenVINO's narrow network, and answers as a call alone."""
    from models.runtimes.device import torch_threads

    fast = loaded(SsdMobileNetV2Detector, model_dir, "auto", torch_threads=2)
    for photo in reference_photos.values():
        item = item_of(fast, photo)
        (alone,) = fast.predict([item])
        with torch_threads(1):
            (beside_others,) = fast.predict([item])
        assert beside_others.classes == alone.classes
        assert torch.allclose(beside_others.detections.scores, alone.detections.scores, atol=1e-5)


@pytest.mark.slow
def test_faces_on_openvino_answer_as_torch(
    model_dir: Path, reference_photos: dict[str, Image.Image]
) -> None:
    """MTCNN's boxes, landmarks and probabilities within 1e-3 of torch's, the same faces."""
    fast = loaded(MtcnnFaceDetector, model_dir, "auto")
    today = loaded(MtcnnFaceDetector, model_dir, "torch")
    assert fast.runtime == "openvino" and today.runtime == "torch"
    photos = dict(reference_photos)
    both = Image.new("RGB", (1024, 768), (128, 128, 128))
    both.paste(reference_photos["astronaut"], (0, 0))
    both.paste(reference_photos["grace_hopper"], (512, 0))
    photos["both"] = both
    found = 0
    for name, photo in photos.items():
        item = item_of(fast, photo, "JPEG")
        (got,) = fast.predict([item])
        (expected,) = today.predict([item])
        assert len(got) == len(expected), name
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
            assert abs(a.probability - b.probability) < 1e-5
        found += len(got)
    assert found >= 4


def test_planar_float_keeps_every_value() -> None:
    from models.detect_faces.mtcnn import planar_float

    pixels = torch.randint(0, 256, (2, 5, 7, 3), dtype=torch.uint8)
    planar = planar_float(pixels)
    assert planar.dtype == torch.float32 and torch.equal(planar, pixels.float())
    # Stored channel by channel: facenet-pytorch's permute to channels first is contiguous.
    assert planar.permute(0, 3, 1, 2).is_contiguous()


@pytest.mark.slow
def test_faces_on_planar_channels_are_the_same_bits(
    model_dir: Path, reference_photos: dict[str, Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MTCNN on OpenVINO with its input planar (faster) and as it comes (interleaved)."""
    import models.detect_faces.mtcnn as mtcnn

    detector = loaded(MtcnnFaceDetector, model_dir, "auto")
    items = [item_of(detector, photo, "JPEG") for photo in reference_photos.values()]
    planar = [detector.predict([item])[0] for item in items]
    monkeypatch.setattr(mtcnn, "planar_float", lambda pixels: pixels)
    interleaved = [detector.predict([item])[0] for item in items]
    assert sum(len(faces) for faces in planar) >= 2
    for ours, theirs in zip(planar, interleaved, strict=True):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert np.array_equal(a.box, b.box) and np.array_equal(a.landmarks, b.landmarks)
            assert a.probability == b.probability


@pytest.mark.slow
def test_descriptors_on_openvino_equal_the_torch_port(
    model_dir: Path, astronaut: Image.Image, grace_hopper: Image.Image
) -> None:
    fast = loaded(DlibFaceRecognizer, model_dir, "auto")
    today = loaded(DlibFaceRecognizer, model_dir, "torch")
    assert fast._encoder.runtime == "openvino" and today._encoder.runtime == "torch"
    chips = []
    for photo in (astronaut, grace_hopper):
        item = item_of(today, photo, "JPEG")
        chips += [face.chip for face in today.predict([item])[0]]
    assert len(chips) == 2
    got, expected = fast.describe(chips), today.describe(chips)
    assert got.shape == (2, 128) and got.dtype == np.float32
    assert np.linalg.norm(got - expected, axis=1).max() < 1e-4
    np.testing.assert_allclose(fast.describe(chips[:1]), got[:1], atol=1e-5)


@pytest.mark.slow
def test_ocr_on_openvino_reads_the_same_text_as_onnxruntime(
    model_dir: Path, reference_photos: dict[str, Image.Image]
) -> None:
    """tests/test_onnx_port.py's check of the torch ports, for OpenVINO."""
    import skimage.data

    fast = loaded(PpOcrV4TextReader, model_dir, "auto", onnx_threads=2)
    today = loaded(PpOcrV4TextReader, model_dir, "torch", onnx_threads=2)
    assert fast.runtime == Runtime.OPENVINO and today.runtime == Runtime.ONNXRUNTIME
    pages = [page.image for page in render_pages()]
    pages += [encode(skimage.data.page(), "PNG"), encode(reference_photos["coffee"], "PNG")]
    read_lines = 0
    for number, data in enumerate(pages):
        image = decode_image(data, inspect_image(data, 10**9), fast.input_max_side)
        (got,) = fast.predict([fast.preprocess(image)])
        (expected,) = today.predict([today.preprocess(image)])
        assert [line.text for line in got] == [line.text for line in expected], number
        for a, b in zip(got, expected, strict=True):
            assert abs(a.confidence - b.confidence) < 1e-3, number
        read_lines += len(got)
    assert read_lines >= 40


@pytest.mark.slow
def test_openvino_conversion_is_kept_and_made_again_when_the_source_changes(
    tmp_path: Path,
) -> None:
    import json

    from models.runtimes import openvino

    conversions = []

    def make():
        conversions.append(1)
        return openvino.convert_torch(torch.nn.Linear(3, 2), torch.zeros(1, 3), dynamic=[[0]])

    first = openvino.cached_ir(tmp_path, "net", "a" * 64, make)
    xml, weights, note = openvino.ir_paths(tmp_path, "net")
    assert xml.is_file() and weights.is_file() and len(conversions) == 1
    assert json.loads(note.read_text())["source"] == "a" * 64
    stamp = weights.stat().st_mtime_ns
    openvino.cached_ir(tmp_path, "net", "a" * 64, make)
    assert len(conversions) == 1 and weights.stat().st_mtime_ns == stamp
    network = openvino.OpenVinoNetwork(first, threads=2, instances=2)
    (out,) = network.run(np.ones((4, 3), dtype=np.float32))
    assert out.shape == (4, 2)
    openvino.cached_ir(tmp_path, "net", "b" * 64, make)
    assert len(conversions) == 2
    # Weights in float32: OpenVINO's save_model would otherwise compress them to fp16.
    assert weights.stat().st_size >= (3 * 2 + 2) * 4


# Eight first calls at once, in a fresh process: the race is on the process' first numpy array
# to cross into OpenVINO. Once the bridge is prepared, none may hang. Without it, about one
# process in two never finishes under these conditions (our modules, so torch, imported first;
# a network compiled by a core that is then dropped); in a live server, rarely, a hung request
# held a database row lock and the other server's requests waited on it.
FIRST_CALLS_AT_ONCE = """
import threading
from models.runtimes.openvino import prepare_numpy_bridge
import numpy as np
from openvino import Core, Model, opset13

prepare_numpy_bridge()  # as our core() does first
source = opset13.parameter([1, 8], np.float32)
compiled = Core().compile_model(Model([opset13.relu(source)], [source]), "CPU", {"NUM_STREAMS": 4})
requests = [compiled.create_infer_request() for _ in range(8)]
start = threading.Barrier(8)
answers = []

def first_call(request):
    start.wait()
    request.infer({0: np.full((1, 8), -1.0, np.float32)})
    answers.append(request.get_output_tensor(0).data.copy())

callers = [threading.Thread(target=first_call, args=(request,)) for request in requests]
for caller in callers:
    caller.start()
for caller in callers:
    caller.join()
assert len(answers) == 8 and all((answer == 0).all() for answer in answers)
"""


@pytest.mark.parametrize("attempt", range(6))
def test_first_openvino_calls_from_several_threads_all_finish(attempt: int) -> None:
    import subprocess
    import sys

    finished = subprocess.run(
        [sys.executable, "-c", FIRST_CALLS_AT_ONCE],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
