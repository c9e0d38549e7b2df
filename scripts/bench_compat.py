"""Latency of /v1/vision/detection as Frigate's DeepStack detector calls it: a 320 x 320 JPEG
per request, `api_key` empty (charged to IMAGERECOGNIZE_DEEPSTACK_ANONYMOUS_KEY), no
min_confidence, against a live `imagerecognize serve`.

Usage (from the repository root):

    .venv/bin/python scripts/bench_compat.py                    # concurrency 1 and 4
    .venv/bin/python scripts/bench_compat.py --concurrency 1 2 4 8 --requests 40 --rounds 5

Prints, per round and concurrency (the levels take turns, so that a change in the machine's
load shows), p50 / p90 / p99 / max in ms, requests per second, and the share of requests
that Frigate's default `api_timeout` of 0.1 s would have given up on. Every request
carries a different frame (one pixel changed), so none is answered from stored results, as
with a camera. The first requests (which load the objects model) and the first few of each
level are not counted.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402
from PIL import Image  # noqa: E402

FRIGATE_SIZE = (320, 320)
FRIGATE_DEFAULT_TIMEOUT_S = 0.1
WARM_UP = 4
ANONYMOUS = "frigate"


def frames(count: int) -> list[bytes]:
    """``count`` different 320 x 320 JPEGs of street-like photos (people, a cat, a rocket)."""
    import skimage.data

    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.rocket()]
    bases = [Image.fromarray(p).resize(FRIGATE_SIZE, Image.Resampling.BILINEAR) for p in photos]
    out = []
    for index in range(count):
        # Sensor-like noise, different in every frame: a one-pixel change can vanish in the
        # JPEG's quantisation and give the same bytes (then a stored result answers).
        noise = np.random.default_rng(index).integers(-4, 5, (320, 320, 3), dtype=np.int16)
        base = np.asarray(bases[index % len(bases)], dtype=np.int16)
        image = Image.fromarray((base + noise).clip(0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG")  # Pillow's default quality, as Frigate saves its frames
        out.append(buffer.getvalue())
    assert len(set(out)) == count, "frames must differ"
    return out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    env = dict(
        os.environ,
        IMAGERECOGNIZE_DATA_DIR=str(data_dir),
        IMAGERECOGNIZE_DEEPSTACK_ANONYMOUS_KEY=ANONYMOUS,
    )
    subprocess.run(
        [sys.executable, "-m", "server", "keys", "create", "--name", ANONYMOUS],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {(data_dir / 'server.log').read_text()}")
        try:
            if requests.get(f"{base}/health", timeout=2).status_code == 200:
                return process, base
        except requests.RequestException:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("server did not start in 2 minutes")


def detect(session: requests.Session, url: str, frame: bytes) -> float:
    """One Frigate request; its latency in ms."""
    started = time.perf_counter()
    # Long enough for the first request, which loads the model (Frigate gives up sooner).
    response = session.post(url, data={"api_key": ""}, files={"image": frame}, timeout=600)
    elapsed = (time.perf_counter() - started) * 1000.0
    if response.status_code != 200 or "predictions" not in response.json():
        raise SystemExit(f"detection failed: {response.status_code} {response.text}")
    return elapsed


def level(url: str, images: list[bytes], concurrency: int) -> list[float]:
    sessions = [requests.Session() for _ in range(concurrency)]

    def worker(index: int) -> list[float]:
        mine = images[index::concurrency]
        return [detect(sessions[index], url, frame) for frame in mine]

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(worker, range(concurrency)))
    return [latency for worker_latencies in results for latency in worker_latencies]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--requests", type=int, default=24, help="per level and round")
    parser.add_argument(
        "--rounds", type=int, default=3, help="each level this many times, the levels in turn"
    )
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-compat-"))
    process, base = start_server(data_dir)
    url = f"{base}/v1/vision/detection"
    try:
        model = requests.post(f"{base}/v1/vision/custom/list", timeout=10).json()["models"]
        print(f"objects model {model}, {os.cpu_count()} CPUs, {FRIGATE_SIZE} JPEG frames")
        levels = args.concurrency * args.rounds
        images = iter(frames(WARM_UP * (1 + len(levels)) + args.requests * len(levels)))
        level(url, [next(images) for _ in range(WARM_UP)], 1)  # loads the model
        print("round concurrency   p50 ms   p90 ms   p99 ms   max ms   req/s   over 0.1 s")
        for index, concurrency in enumerate(levels):
            level(url, [next(images) for _ in range(WARM_UP)], concurrency)
            batch = [next(images) for _ in range(args.requests)]
            started = time.perf_counter()
            latencies = np.array(level(url, batch, concurrency))
            seconds = time.perf_counter() - started
            p50, p90, p99 = (float(np.percentile(latencies, p)) for p in (50, 90, 99))
            over = float(np.mean(latencies > FRIGATE_DEFAULT_TIMEOUT_S * 1000.0))
            print(
                f"{index // len(args.concurrency) + 1:>5} {concurrency:>11} {p50:8.1f} "
                f"{p90:8.1f} {p99:8.1f} {latencies.max():8.1f} {len(batch) / seconds:7.1f} "
                f"{over:11.0%}",
                flush=True,
            )
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
