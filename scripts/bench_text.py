"""OCR benchmark: RapidOCR's own default pipeline against ours, on the same rendered pages.

Usage: .venv/bin/python scripts/bench_text.py [--repeat N]

Prints the character error rate (spaces counted) and the milliseconds per page of both. Both
run the same three ONNX files on the CPU with the same number of threads.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from models.detect_text.ppocr import PpOcrV4TextReader  # noqa: E402
from models.images import decode_image, inspect_image  # noqa: E402
from scripts.rendered_text import character_error_rate, render_pages  # noqa: E402
from server.settings import Settings  # noqa: E402


def rapidocr_lines(engine, data: bytes) -> list[str]:
    bgr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[:, :, ::-1].copy()
    result, _ = engine(bgr)
    if not result:
        return []
    # RapidOCR returns boxes in its own order; sort top to bottom as a reader would.
    ordered = sorted(result, key=lambda r: np.mean([p[1] for p in r[0]]))
    return [text for _, text, _ in ordered]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over the pages")
    args = parser.parse_args()
    threads = len(os.sched_getaffinity(0))
    pages = render_pages()
    expected = ["\n".join(page.lines) for page in pages]

    from rapidocr_onnxruntime import RapidOCR

    theirs = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
    options = Settings(onnx_threads=threads, onnx_instances=1).model_options()
    ours = PpOcrV4TextReader(torch.device("cpu"), options)
    ours.load()

    def ours_lines(data: bytes) -> list[str]:
        image = decode_image(data, inspect_image(data, 10**9), ours.input_max_side)
        (lines,) = ours.predict([ours.preprocess(image)])
        return [line.text for line in lines]

    print(f"{len(pages)} pages, {sum(len(p.lines) for p in pages)} lines, {threads} threads")
    print(f"{'pipeline':<12} {'CER':>7} {'ms/page':>9}")
    for name, run in (("rapidocr", lambda d: rapidocr_lines(theirs, d)), ("ours", ours_lines)):
        found = ["\n".join(run(page.image)) for page in pages]  # also warms up
        started = time.perf_counter()
        for _ in range(args.repeat):
            for page in pages:
                run(page.image)
        elapsed = (time.perf_counter() - started) * 1000 / (args.repeat * len(pages))
        print(f"{name:<12} {100 * character_error_rate(found, expected):6.2f}% {elapsed:9.1f}")


if __name__ == "__main__":
    main()
