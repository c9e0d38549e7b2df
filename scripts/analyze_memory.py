"""Peak memory of `imagerecognize analyze` as the collection grows: the local engine is a
bounded pipeline, so a 10,000-image run should peak within 10 % of a 1,000-image run.

Usage (from the repository root):

    .venv/bin/python scripts/analyze_memory.py                    # 1,000 and 10,000 images
    .venv/bin/python scripts/analyze_memory.py --counts 200 2000 --type nsfw

Generates small distinct PNGs (a fast type keeps the run short), runs the command once per
count in a fresh process and reads that process's peak RSS from the kernel (wait4).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PARAMS = {
    "objects": ["--max-labels", "10", "--min-confidence", "30"],
    "nsfw": ["--nsfw-min-confidence", "0"],
}


def make_images(folder: Path, count: int, side: int) -> None:
    """``count`` distinct PNGs in sub-folders of 1,000."""
    for index in range(count):
        sub = folder / f"{index // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (side, side), (index % 251, (index // 251) % 251, 90))
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        (sub / f"{index:06d}.png").write_bytes(buffer.getvalue())


def peak_rss_mb(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, exit status) of one run of ``command``."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    summary = process.stderr.read().strip().splitlines() if process.stderr else []
    print("   ", summary[-1] if summary else "(no output)")
    return usage.ru_maxrss / 1024, time.perf_counter() - started, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--type", default="detect_faces")
    parser.add_argument("--side", type=int, default=64, help="image side in pixels")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="analyze-memory-"))
    env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(work / "data"))
    peaks = {}
    for count in args.counts:
        folder = work / f"images-{count}"
        make_images(folder, count, args.side)
        command = [
            sys.executable, "-m", "server", "analyze", str(folder), "--type", args.type,
            *PARAMS.get(args.type, []), "--out", str(work / f"results-{count}.jsonl"),
        ]  # fmt: skip
        peak, seconds, status = peak_rss_mb(command, env)
        peaks[count] = peak
        print(f"{count:>7} images ({args.type}): peak RSS {peak:7.1f} MB, {seconds:6.1f} s, "
              f"exit {status}")  # fmt: skip
    first, last = args.counts[0], args.counts[-1]
    print(f"peak RSS {last} vs {first} images: {100 * (peaks[last] / peaks[first] - 1):+.1f} %")


if __name__ == "__main__":
    main()
