"""ONNX Runtime against the torch ports, on CPU: nsfw (open_nsfw) and detect_text (PP-OCRv4).

Usage: .venv/bin/python scripts/bench_onnx_port.py [--rounds N] [--threads N]

Both runtimes run the same preprocessed inputs through the model class's own ``predict``,
one image (page) per call, in interleaved rounds; printed side by side: milliseconds per
image or page (median over rounds), nsfw's largest score difference in points, and the pages
whose text differs. The faster runtime is each model's ``cpu_runtime``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import skimage.data  # noqa: E402
import torch  # noqa: E402
from matplotlib import cbook  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import load_sample_images  # noqa: E402

from models.detect_text.ppocr import PpOcrV4TextReader  # noqa: E402
from models.images import decode_image, inspect_image  # noqa: E402
from models.nsfw.open_nsfw import OpenNsfwClassifier  # noqa: E402
from models.options import ModelOptions  # noqa: E402
from models.runtimes.onnx_port import Runtime  # noqa: E402
from scripts.rendered_text import render_pages  # noqa: E402
from server.settings import Settings  # noqa: E402


def photos() -> list[Image.Image]:
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        hopper = Image.open(handle).convert("RGB")
    names = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "hubble_deep_field")
    images = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in names]
    return [*images, hopper, *(Image.fromarray(a) for a in load_sample_images().images)]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def timed_rounds(models: dict[Runtime, object], items: list, rounds: int) -> dict[Runtime, float]:
    """Median over rounds of the milliseconds per item, runtimes interleaved per round."""
    times: dict[Runtime, list[float]] = {runtime: [] for runtime in models}
    for model in models.values():
        model.predict(items[:1])  # warm-up
    for _ in range(rounds):
        for runtime, model in models.items():
            started = time.perf_counter()
            for item in items:
                model.predict([item])
            times[runtime].append((time.perf_counter() - started) * 1000 / len(items))
    return {runtime: statistics.median(values) for runtime, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    model_dir = Path(tempfile.mkdtemp(prefix="onnx-ports-"))
    runtimes = (Runtime.ONNXRUNTIME, Runtime.TORCH)
    print(f"CPU, {args.threads} threads, {args.rounds} interleaved rounds")

    def options(runtime: str) -> ModelOptions:
        return Settings(
            model_dir=model_dir, onnx_threads=args.threads, onnx_cpu_runtime=runtime
        ).model_options()

    nsfw = {r: OpenNsfwClassifier(device, options(r)) for r in runtimes}
    for model in nsfw.values():
        model.load()
    any_nsfw = nsfw[Runtime.ONNXRUNTIME]
    inputs = []
    for image in photos():
        data = png(image)
        decoded = decode_image(data, inspect_image(data, 10**9), any_nsfw.input_max_side)
        inputs.append(any_nsfw.preprocess(decoded))
    scores = {r: [s * 100 for item in inputs for s in m.predict([item])] for r, m in nsfw.items()}
    difference = max(
        abs(a - b) for a, b in zip(scores[runtimes[0]], scores[runtimes[1]], strict=True)
    )
    nsfw_ms = timed_rounds(nsfw, inputs, args.rounds)
    del nsfw

    text = {r: PpOcrV4TextReader(device, options(r)) for r in runtimes}
    for model in text.values():
        model.load()
    any_text = text[Runtime.ONNXRUNTIME]
    pages = [page.image for page in render_pages()] + [png(Image.fromarray(skimage.data.page()))]
    page_inputs = [
        any_text.preprocess(decode_image(data, inspect_image(data, 10**9), any_text.input_max_side))
        for data in pages
    ]
    texts = {
        r: [[line.text for line in m.predict([item])[0]] for item in page_inputs]
        for r, m in text.items()
    }
    differing = sum(a != b for a, b in zip(*texts.values(), strict=True))
    text_ms = timed_rounds(text, page_inputs, args.rounds)

    print(f"{'':28}{'onnxruntime':>14}{'torch port':>14}")
    print(
        f"{'nsfw ms/image (' + str(len(inputs)) + ' photos)':28}"
        f"{nsfw_ms[Runtime.ONNXRUNTIME]:14.1f}{nsfw_ms[Runtime.TORCH]:14.1f}"
    )
    print(
        f"{'detect_text ms/page (' + str(len(pages)) + ')':28}"
        f"{text_ms[Runtime.ONNXRUNTIME]:14.1f}{text_ms[Runtime.TORCH]:14.1f}"
    )
    print(f"nsfw largest score difference: {difference:.4f} points")
    print(f"detect_text pages whose text differs: {differing} of {len(pages)}")


if __name__ == "__main__":
    main()
