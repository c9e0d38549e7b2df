"""What the Rekognition dialect adds to an analysis: the same images through /api/v2/ (a
multipart form) and through boto3 (AWS JSON 1.1, the image in base64, a SigV4 signature the
server checks), one request at a time, against a live `imagerecognize serve`.

Usage (from the repository root):

    .venv/bin/python scripts/bench_rekognition.py                      # 20 requests per type
    .venv/bin/python scripts/bench_rekognition.py --requests 40 --rounds 3

Prints, per round, type and API, the median and p90 latency in ms seen by the client. The
two APIs take turns request by request, so that a change in the machine's load shows in
both. Every request carries a different image (one pixel changed), so none is answered from
stored results. The first requests of each type (which load its model) are not counted.
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

import boto3  # noqa: E402
import requests  # noqa: E402
from PIL import Image  # noqa: E402

WARM_UP = 3
# (type on /api/v2/ with its fields, the Rekognition operation doing the same analysis)
CASES = {
    "detect_faces": ({}, "detect_faces"),
    "objects": ({"max_labels": "1000", "min_confidence": "55"}, "detect_labels"),
}


def frames(count: int) -> list[bytes]:
    """The astronaut photo as JPEGs, each with one pixel changed."""
    import skimage.data

    base = skimage.data.astronaut().copy()
    out = []
    for i in range(count):
        pixels = base.copy()
        pixels[i // base.shape[1], i % base.shape[1], 0] ^= 0x40
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(data_dir), IMAGERECOGNIZE_PRELOAD="false")
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return process
        except requests.ConnectionError:
            time.sleep(0.3)
    process.terminate()
    raise SystemExit("the server did not start")


def cli(data_dir: Path, *args: str) -> list[str]:
    env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(data_dir))
    done = subprocess.run(
        [sys.executable, "-m", "server", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, check=True,
    )
    return done.stdout.splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20, help="per type, API and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "data"
        key, access, secret = cli(data_dir, "keys", "create", "--name", "bench", "--aws")
        process = serve(data_dir, args.port)
        try:
            url = f"http://127.0.0.1:{args.port}"
            client = boto3.client(
                "rekognition",
                endpoint_url=url,
                region_name="eu-west-1",
                aws_access_key_id=access.split(" = ")[1],
                aws_secret_access_key=secret.split(" = ")[1],
            )
            images = iter(frames(2 * (WARM_UP + args.requests * args.rounds) * len(CASES)))
            for type_, (fields, operation) in CASES.items():
                for _ in range(WARM_UP):
                    getattr(client, operation)(Image={"Bytes": next(images)})
                    requests.post(
                        f"{url}/api/v2/", data={"apikey": key, "type": type_, **fields},
                        files={"file": next(images)}, timeout=120,
                    )
            print(f"{'round':>5} {'type':<13} {'API':<12} {'p50 ms':>8} {'p90 ms':>8}")
            for round_ in range(1, args.rounds + 1):
                for type_, (fields, operation) in CASES.items():
                    timings: dict[str, list[float]] = {"/api/v2/": [], "rekognition": []}
                    for _ in range(args.requests):
                        started = time.perf_counter()
                        answer = requests.post(
                            f"{url}/api/v2/", data={"apikey": key, "type": type_, **fields},
                            files={"file": next(images)}, timeout=120,
                        )
                        timings["/api/v2/"].append(time.perf_counter() - started)
                        assert answer.status_code == 200, answer.text
                        started = time.perf_counter()
                        getattr(client, operation)(Image={"Bytes": next(images)})
                        timings["rekognition"].append(time.perf_counter() - started)
                    for api, seconds in timings.items():
                        ms = sorted(1000.0 * s for s in seconds)
                        p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
                        print(
                            f"{round_:>5} {type_:<13} {api:<12} "
                            f"{statistics.median(ms):>8.1f} {p90:>8.1f}"
                        )
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
