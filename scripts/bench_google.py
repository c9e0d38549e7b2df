"""One `images:annotate` call with the five features served, against five calls of one
feature each, as Google Cloud Vision's Python client sends them (REST), to a live
`imagerecognize serve`: what decoding once and one request instead of five save.

Usage (from the repository root, with the test tools installed: google-cloud-vision):

    .venv/bin/python scripts/bench_google.py                 # 5 rounds, a 1600 x 1875 JPEG
    .venv/bin/python scripts/bench_google.py --rounds 9 --side 1024

Prints each round's milliseconds for both, then their medians. Each round sends a
different image (one pixel changed), after a first round that loads the models.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from google.cloud import vision  # noqa: E402
from matplotlib import cbook  # noqa: E402
from PIL import Image  # noqa: E402

FEATURES = (
    vision.Feature.Type.FACE_DETECTION,
    vision.Feature.Type.LABEL_DETECTION,
    vision.Feature.Type.OBJECT_LOCALIZATION,
    vision.Feature.Type.TEXT_DETECTION,
    vision.Feature.Type.SAFE_SEARCH_DETECTION,
)


def photo(side: int, round_: int) -> bytes:
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        image = Image.open(handle).convert("RGB")
    image = image.resize((side, round(side * image.height / image.width)))
    image.putpixel((round_, 0), (round_ % 256, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--side", type=int, default=1600, help="the image's width in pixels")
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp()) / "data"
    env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(data_dir))
    python = sys.executable
    key = subprocess.run(
        [python, "-m", "server", "keys", "create", "--name", "bench"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    server = subprocess.Popen(
        [python, "-m", "server", "serve", "--port", str(args.port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if requests.get(f"{url}/readyz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not become ready")
            time.sleep(0.5)
        client = vision.ImageAnnotatorClient(
            transport="rest", client_options={"api_endpoint": url, "api_key": key}
        )
        together, apart = [], []
        for round_ in range(args.rounds + 1):
            image = {"content": photo(args.side, round_)}
            started = time.perf_counter()
            client.annotate_image({"image": image, "features": [{"type_": f} for f in FEATURES]})
            one_call = time.perf_counter() - started
            started = time.perf_counter()
            for feature in FEATURES:
                client.annotate_image({"image": image, "features": [{"type_": feature}]})
            five_calls = time.perf_counter() - started
            if round_ == 0:
                continue  # the models loaded
            together.append(one_call * 1000)
            apart.append(five_calls * 1000)
            print(
                f"round {round_}: one call {one_call * 1000:.0f} ms, "
                f"five calls {five_calls * 1000:.0f} ms"
            )
        print(
            f"median: one call with five features {statistics.median(together):.0f} ms, "
            f"five calls of one feature {statistics.median(apart):.0f} ms "
            f"(load average {os.getloadavg()[0]:.1f})"
        )
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
