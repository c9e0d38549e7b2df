"""Time to ready, and each type's first answer against its steady latency, of a server
started fresh: `imagerecognize serve` on a new data folder (nothing converted or compiled
yet), then a second start on the same folder (what a restart finds).

Usage (from the repository root, after `make setup`):

    .venv/bin/python scripts/first_answers.py                 # fresh folder, then a restart
    .venv/bin/python scripts/first_answers.py --once          # the fresh start only
    .venv/bin/python scripts/first_answers.py --data-dir data # an existing folder, once
    IMAGERECOGNIZE_PRELOAD=false .venv/bin/python scripts/first_answers.py --once  # lazy

For each start it prints the seconds from starting the process to the server's "ready" line
(or, lazy, to its first answer to /livez), then per type the first request's latency and the
median of the 5 after it, each request with a different image (none answered from stored
results), one at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
TYPES = ("objects", "detect_faces", "nsfw", "detect_text", "celebrities")
PARAMS = {  # the types' required parameters (docs/api.md)
    "objects": {"max_labels": 10, "min_confidence": 30},
    "nsfw": {"nsfw_min_confidence": 0},
}
STEADY_REQUESTS = 5
START_TIMEOUT_S = 900.0
READY_LINES = ("ready: answering on", "models load on first use (IMAGERECOGNIZE_PRELOAD=false)")


def photos() -> dict[str, Image.Image]:
    """A photo per type, of what that type finds (the packages' sample images; a page of
    drawn text for detect_text)."""
    import skimage.data
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        hopper = Image.open(handle).convert("RGB")
    astronaut = Image.fromarray(skimage.data.astronaut())
    page = Image.new("RGB", (800, 400), "white")
    draw = ImageDraw.Draw(page)
    for row, line in enumerate(("Self-hosted image", "recognition server", "OPEN 9 TO 5")):
        draw.text((40, 40 + 110 * row), line, fill="black", font_size=64)
    return {
        "objects": Image.fromarray(skimage.data.coffee()),
        "detect_faces": astronaut,
        "nsfw": astronaut,
        "detect_text": page,
        "celebrities": hopper,
    }


def distinct_jpeg(photo: Image.Image, index: int) -> bytes:
    """The photo with one pixel changed: the same work, a different file."""
    image = photo.copy()
    image.putpixel((index % image.width, 0), (index % 256, 255 - index % 256, 0))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_key(env: dict[str, str]) -> str:
    name = f"first-answers-{time.time_ns()}"  # one per start: names are unique
    command = [sys.executable, "-m", "server", "keys", "create", "--name", name]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def measure(data_dir: Path, label: str) -> None:
    env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(data_dir))
    key = create_key(env)  # before the clock starts: `make serve` makes its demo key first
    port = free_port()
    log_path = data_dir.parent / f"first-answers-{port}.log"
    with open(log_path, "wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        while not any(line in log_path.read_text() for line in READY_LINES):
            if process.poll() is not None or time.monotonic() - started > START_TIMEOUT_S:
                raise RuntimeError(f"the server never said it was ready: see {log_path}")
            time.sleep(0.1)
        ready_s = time.monotonic() - started
        print(f"{label}: ready {ready_s:.1f} s after start", flush=True)
        url = f"http://127.0.0.1:{port}/api/v2/"
        rows = []
        session = requests.Session()
        for type_, photo in photos().items():
            latencies = []
            for index in range(1 + STEADY_REQUESTS):
                request_started = time.perf_counter()
                response = session.post(
                    url, data={"apikey": key, "type": type_, **PARAMS.get(type_, {})},
                    files={"file": ("photo.jpg", distinct_jpeg(photo, index))}, timeout=900,
                )
                latencies.append((time.perf_counter() - request_started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{type_}: {response.status_code} {response.text[:200]}")
            steady = statistics.median(latencies[1:])
            rows.append((type_, latencies[0], steady, latencies[0] / steady))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    preload = os.environ.get("IMAGERECOGNIZE_PRELOAD", "true")
    print(f"\n{label} (IMAGERECOGNIZE_PRELOAD={preload}): ready {ready_s:.1f} s after start")
    print(f"{'type':<14} {'first ms':>10} {'steady ms':>10} {'first/steady':>13}")
    for type_, first, steady, ratio in rows:
        print(f"{type_:<14} {first:>10.0f} {steady:>10.0f} {ratio:>13.2f}")
    print(f"(steady: median of the {STEADY_REQUESTS} requests after the first; log {log_path})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="use this data folder (measured once)")
    parser.add_argument("--once", action="store_true", help="no second start")
    args = parser.parse_args()
    if args.data_dir is not None:
        measure(args.data_dir.resolve(), f"start on {args.data_dir}")
        return 0
    data_dir = Path(tempfile.mkdtemp(prefix="first-answers-")) / "data"
    measure(data_dir, "fresh data folder (nothing converted or compiled)")
    if not args.once:
        measure(data_dir, "second start, same folder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
