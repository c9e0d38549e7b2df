"""Benchmark of every type: the raw in-process pipeline, this server over HTTP, a naive
server (scripts/naive_server.py: decode and run the model per request, no batching), and the
same model in LitServe with its own dynamic batching (scripts/litserve_server.py).

Usage (from the repository root, after `make setup`):

    .venv/bin/python scripts/bench.py                       # all types, concurrency 1 4 16 64
    .venv/bin/python scripts/bench.py --types objects nsfw --concurrency 1 16 --requests 64
    .venv/bin/python scripts/bench.py --soak nsfw           # 2,000 requests, queue bound 32
    .venv/bin/python scripts/bench.py --sizes               # 12 MP vs 1 MP JPEG per request
    .venv/bin/python scripts/bench.py --types detect_faces nsfw --concurrency 1 16 \
        --servers server litserve --rounds 3 --no-raw       # short, interleaved comparison
    git worktree add /tmp/before REV
    .venv/bin/python scripts/bench.py --concurrency 1 16 --servers server \
        --baseline /tmp/before --rounds 3 --no-raw          # before and after a change

For each type it measures, on the same images and interleaved (server, naive, server, ...):
(a) the raw pipeline (decode, preprocess, predict, postprocess in one thread) at batch sizes
1, 2, 4 and 8, keeping the best; (a') `imagerecognize analyze` on a folder of the same kind of
images (its summary's images/s, counted after the models have loaded); (b) the server at
each concurrency; (c) the naive server and (d) LitServe (max batch 4, 10 ms timeout) at each
concurrency. With --rounds N every level is measured N times, the servers taking turns, and
the table gives each column's range. Only the server being measured runs: the others are
frozen (SIGSTOP to their process groups), so that their idle workers take no CPU. It
prints a table, and writes bench-results/bench.json and bench.png.
Every request carries a different image, so no answer comes from stored results. On a GPU
machine the same command measures CUDA (both servers choose CUDA when present).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
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

from server.ops.memory import TRIM_INTERVAL_S  # noqa: E402

TYPES = ("objects", "detect_faces", "nsfw", "detect_text", "celebrities")
PARAMS = {
    "objects": {"max_labels": 10, "min_confidence": 30},
    "nsfw": {"nsfw_min_confidence": 0},
}


def base_images() -> list[Image.Image]:
    import skimage.data
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        hopper = Image.open(handle).convert("RGB")
    photos = [
        Image.fromarray(skimage.data.astronaut()),
        Image.fromarray(skimage.data.coffee()),
        Image.fromarray(skimage.data.chelsea()),
        hopper,
    ]
    return [photo.resize((1024, 768), Image.Resampling.BICUBIC) for photo in photos]


def distinct_jpegs(count: int) -> list[bytes]:
    """``count`` different 1024 x 768 JPEGs (a one-pixel change makes each unique)."""
    bases = base_images()
    out = []
    for index in range(count):
        image = bases[index % len(bases)].copy()
        image.putpixel((index % 1024, (index // 1024) % 768), (index % 256, 0, 0))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def camera_jpegs(count: int, size: tuple[int, int]) -> list[bytes]:
    """``count`` different JPEGs of ``size`` with sensor-like noise, so that a 12 MP one
    weighs what a camera's does (about 3 MB) rather than what a smooth upscale would."""
    rng = np.random.default_rng(0)
    bases = base_images()
    out = []
    for index in range(count):
        base = bases[index % len(bases)]
        pixels = np.asarray(base.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
        noisy = pixels + rng.integers(-12, 13, pixels.shape, dtype=np.int16) + index
        buffer = io.BytesIO()
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def size_cost(types: list[str], repeats: int = 8) -> None:
    """Per-request p50 at concurrency 1 for 12 MP and 1 MP JPEGs of the same photos."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-sizes-"))
    env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(data_dir))
    key = create_key(env, "sizes")
    server = Server(
        [sys.executable, "-m", "server", "serve", "--port", str(port := free_port())], env, port
    )
    targets = {"objects": 1.5, "detect_faces": 1.5, "nsfw": 2.2}
    try:
        small = camera_jpegs(2 * repeats + 4, (1152, 864))
        large = camera_jpegs(2 * repeats + 4, (4000, 3000))
        print(f"1 MP JPEG {len(small[0]) / 1e6:.2f} MB, 12 MP JPEG {len(large[0]) / 1e6:.2f} MB")
        for type_ in types:
            load(server.url, key, type_, small[:4], 1)  # loads the model
            p50 = {"1 MP": [], "12 MP": []}
            for round_ in range(repeats):  # interleaved, a new image every time
                for label, images in (("1 MP", small), ("12 MP", large)):
                    offset = 4 + 2 * round_
                    p50[label].append(
                        load(server.url, key, type_, images[offset : offset + 2], 1)["p50"]
                    )
            one, twelve = float(np.median(p50["1 MP"])), float(np.median(p50["12 MP"]))
            target = targets.get(type_)
            print(
                f"{type_:<13} 1 MP {one:7.1f} ms   12 MP {twelve:7.1f} ms   "
                f"ratio {twelve / one:4.2f}" + (f" (target <= {target})" if target else "")
            )
    finally:
        server.stop()


def percentiles(latencies: list[float]) -> dict[str, float]:
    values = np.array(latencies)
    return {f"p{p}": round(float(np.percentile(values, p)), 1) for p in (50, 95, 99)}


def raw_pipeline(type_: str, images: list[bytes]) -> dict:
    import torch

    from models.registry import default_model
    from models.runtimes.device import choose_device
    from server.settings import Settings

    settings = Settings(data_dir=Path(tempfile.mkdtemp()))
    device = choose_device(settings.device)
    torch.set_num_threads(settings.torch_threads)
    cls = default_model(type_, None, settings.resolved_model_dir)
    model = cls(device, settings.model_options())
    model.load()
    results = time_batches(model, type_, images, (1, 2, 4, 8), per_batch_size=16)
    del torch
    best = max(results, key=lambda b: results[b]["images_per_s"])
    return {
        "by_batch": results,
        "best_batch": best,
        "best_images_per_s": results[best]["images_per_s"],
        "batch1_ms": results[1]["ms_per_image"],
    }


def time_batches(
    model, type_: str, images: list[bytes], batch_sizes, per_batch_size: int, predict=None
) -> dict[int, dict]:
    """Decode, preprocess, predict and postprocess ``images`` in one thread, in batches of
    each size (``per_batch_size`` images per size, at least one whole batch): images/s and
    ms per image per batch size. ``predict``: how a batch is run (default
    ``model.predict``)."""
    from models.images import decode_image, inspect_image

    predict = predict or model.predict
    params = PARAMS.get(type_, {})
    results = {}
    for batch in batch_sizes:
        chunk = images[: batch * max(1, per_batch_size // batch)]
        started = time.perf_counter()
        for start in range(0, len(chunk), batch):
            decoded = [
                decode_image(d, inspect_image(d, 10**9), model.input_max_side)
                for d in chunk[start : start + batch]
            ]
            items = [model.preprocess(image) for image in decoded]
            outputs = predict(items)
            for output, item, image in zip(outputs, items, decoded, strict=True):
                model.postprocess(output, item, image, params)
        elapsed = time.perf_counter() - started
        results[batch] = {
            "images": len(chunk),
            "images_per_s": round(len(chunk) / elapsed, 2),
            "ms_per_image": round(1000 * elapsed / len(chunk), 1),
        }
    return results


def analyze_command(type_: str, images: list[bytes], env: dict[str, str]) -> dict:
    """`imagerecognize analyze` over a folder of ``images``: images/s from its summary line."""
    import re

    folder = Path(tempfile.mkdtemp(prefix="bench-analyze-"))
    for index, data in enumerate(images):
        (folder / f"{index:05d}.jpg").write_bytes(data)
    params = [f"--{name.replace('_', '-')}={v}" for name, v in PARAMS.get(type_, {}).items()]
    command = [sys.executable, "-m", "server", "analyze", str(folder), "--type", type_]
    run = subprocess.run(
        [*command, *params, "--out", str(folder.with_suffix(".jsonl"))],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    rate = re.search(r"([\d.]+) images/s", run.stderr)
    return {"images": len(images), "images_per_s": float(rate.group(1)) if rate else 0.0}


class Server:
    def __init__(
        self, command: list[str], env: dict[str, str], port: int, cwd: Path = ROOT
    ) -> None:
        self.url = f"http://127.0.0.1:{port}/api/v2/"
        self.log = Path(tempfile.mkdtemp(prefix="bench-server-")) / "server.log"
        with open(self.log, "wb") as log:
            # A session of its own: stop() ends the server's worker processes too (LitServe's
            # would otherwise go on polling, and slow every later measurement).
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                requests.get(self.url.replace("/api/v2/", "/docs"), timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.3)
        raise RuntimeError(f"server did not start, see {self.log}")

    def pause(self) -> None:
        """Freezes every process of the server (SIGSTOP to its session), so that its idle
        workers take no CPU while another server is measured."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.resume()  # a frozen process would not act on SIGTERM
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send(
    url: str, key: str, type_: str, images: list[bytes], concurrency: int
) -> tuple[list[float], dict[str, int], float]:
    """Posts every image once, ``concurrency`` at a time: the latencies (ms) of the 200
    answers, the count of each status (or exception name), and the wall time (s)."""
    session_pool = [requests.Session() for _ in range(concurrency)]
    fields = {"apikey": key, "type": type_, **PARAMS.get(type_, {})}

    def one(index: int) -> tuple[float, str]:
        session = session_pool[index % concurrency]
        started = time.perf_counter()
        try:
            response = session.post(url, data=fields, files={"file": images[index]}, timeout=300)
        except requests.RequestException as exc:
            return (time.perf_counter() - started) * 1000, type(exc).__name__
        return (time.perf_counter() - started) * 1000, str(response.status_code)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(len(images))))
    wall = time.perf_counter() - started
    statuses: dict[str, int] = {}
    for _, status in results:
        statuses[status] = statuses.get(status, 0) + 1
    return [ms for ms, status in results if status == "200"], statuses, wall


def load(url: str, key: str, type_: str, images: list[bytes], concurrency: int) -> dict:
    latencies, _statuses, wall = send(url, key, type_, images, concurrency)
    return {
        "concurrency": concurrency,
        "requests": len(images),
        "ok": len(latencies),
        "throughput": round(len(latencies) / wall, 2),
        **percentiles(latencies or [0.0]),
    }


def create_key(env: dict[str, str], name: str, tree: Path = ROOT) -> str:
    """A new unlimited key in the data folder that ``env`` names, made by ``tree``'s code."""
    command = [sys.executable, "-m", "server", "keys", "create", "--name", name]
    return subprocess.run(
        command, cwd=tree, env=dict(env, PYTHONPATH=str(tree)), capture_output=True,
        text=True, check=True,
    ).stdout.strip()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def soak(type_: str, total: int, concurrency: int, queue: int) -> None:
    """``total`` requests at ``concurrency`` against a server whose queue holds ``queue``:
    every answer must be 200 or 503, none may hang, and memory must come back."""
    data_dir = Path(tempfile.mkdtemp(prefix="soak-"))
    env = dict(
        os.environ,
        IMAGERECOGNIZE_DATA_DIR=str(data_dir),
        IMAGERECOGNIZE_QUEUE_SIZE=str(queue),
        IMAGERECOGNIZE_REQUEST_TIMEOUT_S="30",
    )
    key = create_key(env, "soak")
    server = Server(
        [sys.executable, "-m", "server", "serve", "--port", str(port := free_port())], env, port
    )
    try:
        # Every request a different image: none is answered from stored results.
        images = distinct_jpegs(total + 8)
        load(server.url, key, type_, images[-8:], 1)  # load the model first
        before = rss_mb(server.process.pid)
        fields = {"apikey": key, "type": type_, **PARAMS.get(type_, {})}
        statuses: dict[str, int] = {}

        def one(index: int) -> str:
            try:
                response = requests.post(
                    server.url,
                    data=fields,
                    files={"file": images[index]},
                    timeout=120,
                )
                return str(response.status_code)
            except requests.RequestException as exc:
                return type(exc).__name__

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            for status in pool.map(one, range(total)):
                statuses[status] = statuses.get(status, 0) + 1
        elapsed = time.perf_counter() - started
        at_end = rss_mb(server.process.pid)
        # An idle server gives the burst's heap back at its next idle check (server/ops/memory.py).
        time.sleep(2 * TRIM_INTERVAL_S + 2)
        after = rss_mb(server.process.pid)
    finally:
        server.stop()
    print(
        f"soak {type_}: {total} requests at concurrency {concurrency}, queue {queue}, "
        f"{elapsed:.1f} s; answers {statuses}; server RSS {before:.0f} MB before, "
        f"{at_end:.0f} MB at the end, {after:.0f} MB after {2 * TRIM_INTERVAL_S + 2:.0f} s idle "
        f"({100 * (after - before) / before:+.1f} %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", nargs="+", default=list(TYPES), choices=TYPES)
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument(
        "--requests",
        type=int,
        default=0,
        help="requests per level (default: max(16, 2 x concurrency))",
    )
    parser.add_argument("--out", default="bench-results")
    parser.add_argument(
        "--sizes",
        action="store_true",
        help="instead: per-request time of 12 MP vs 1 MP JPEGs",
    )
    parser.add_argument(
        "--soak",
        metavar="TYPE",
        choices=TYPES,
        help="instead: 2,000 requests at concurrency 64, queue bound 32",
    )
    parser.add_argument(
        "--servers",
        nargs="+",
        default=list(SERVERS),
        choices=SERVERS,
        help="which servers to measure, taking turns (default: all)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="CHECKOUT",
        help="also measure this server as another checkout of the project runs it (e.g. a "
        "git worktree of an earlier commit), taking turns with the others: before and after "
        "a change in one run",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="measurements of each level per server"
    )
    parser.add_argument(
        "--no-raw",
        action="store_true",
        help="skip the raw in-process pipeline and `imagerecognize analyze` (shorter runs)",
    )
    args = parser.parse_args()
    if args.baseline is not None:
        args.servers = [*args.servers, "baseline"]
    if args.soak:
        soak(args.soak, total=2000, concurrency=64, queue=32)
        return
    if args.sizes:
        size_cost([t for t in args.types if t != "celebrities"])
        return
    out = ROOT / args.out
    out.mkdir(exist_ok=True)
    report: dict = {"machine": {"cpus": os.cpu_count()}, "types": {}}

    for type_ in args.types:
        data_dir = Path(tempfile.mkdtemp(prefix="bench-"))
        env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(data_dir), NAIVE_TYPE=type_)
        key = create_key(env, "bench")
        entry: dict = {name: [] for name in args.servers}
        if not args.no_raw:
            entry["raw"] = raw_pipeline(type_, distinct_jpegs(16))
            entry["analyze"] = analyze_command(type_, distinct_jpegs(args.requests or 64), env)
        servers: dict[str, Server] = {}
        keys = dict.fromkeys(args.servers, key)
        for name in args.servers:
            for started in servers.values():
                started.pause()  # start-up measures nothing, but a fair machine
            server_env = env
            if name == "baseline":  # a database of its own: its schema may be older than ours
                server_env = dict(env, IMAGERECOGNIZE_DATA_DIR=str(data_dir / "baseline"))
                keys[name] = create_key(server_env, "bench", args.baseline)
            servers[name] = start_server(name, server_env, args.baseline)
        try:
            offset = 0
            for concurrency in args.concurrency:
                count = args.requests or max(16, 2 * concurrency)
                rounds: dict[str, list[dict]] = {name: [] for name in servers}
                for _round in range(args.rounds):
                    for name, server in servers.items():
                        images = distinct_jpegs(offset + count)[offset:]
                        offset += count
                        # Only the server being measured runs; the others are frozen.
                        for other in servers.values():
                            if other is not server:
                                other.pause()
                        server.resume()
                        warm_up = images[: min(4, count)]
                        load(server.url, keys[name], type_, warm_up, 1)
                        rounds[name].append(
                            load(server.url, keys[name], type_, images, concurrency)
                        )
                for name, measured in rounds.items():
                    entry[name].append(summarise(measured))
        finally:
            for server in servers.values():
                server.stop()
        report["types"][type_] = entry
        print_type(type_, entry)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    chart(report, out / "bench.png")
    print(f"\nwrote {out / 'bench.json'} and {out / 'bench.png'}")


SERVERS = ("server", "naive", "litserve")


def start_server(name: str, env: dict[str, str], baseline: Path | None = None) -> Server:
    """This server, the naive one, the LitServe one or the baseline checkout's server, on a
    free port."""
    python = sys.executable
    port = free_port()
    if name == "baseline":
        assert baseline is not None
        # The same interpreter and packages, the other checkout's code.
        tree = baseline.resolve()
        command = [python, "-m", "server", "serve", "--port", str(port)]
        return Server(command, dict(env, PYTHONPATH=str(tree)), port, cwd=tree)
    if name == "server":
        command = [python, "-m", "server", "serve", "--port", str(port)]
    elif name == "naive":
        command = [
            python, "-m", "uvicorn", "--factory", "scripts.naive_server:create_app",
            "--port", str(port), "--log-level", "warning",
        ]  # fmt: skip
    else:  # litserve: one type per server, the one being measured
        command = [
            python, "scripts/litserve_server.py", "--type", env["NAIVE_TYPE"], "--port", str(port)
        ]
    return Server(command, env, port)


def summarise(rounds: list[dict]) -> dict:
    """One level's rounds: the median round's numbers, and each number's range."""
    ordered = sorted(rounds, key=lambda r: r["throughput"])
    summary = dict(ordered[len(ordered) // 2])
    summary["rounds"] = rounds
    for field in ("throughput", "p50", "p95", "p99"):
        values = [r[field] for r in rounds]
        summary[f"{field}_range"] = [min(values), max(values)]
    return summary


def spread(result: dict, field: str) -> str:
    low, high = result[f"{field}_range"]
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def print_type(type_: str, entry: dict) -> None:
    """Per concurrency, each server's images/s and p50 (ranges over rounds), and p95/p99."""
    heading = f"\n{type_}"
    if "raw" in entry:
        raw = entry["raw"]
        heading += (
            f": raw pipeline best {raw['best_images_per_s']} img/s at batch "
            f"{raw['best_batch']}, batch-1 {raw['batch1_ms']} ms"
        )
    if "analyze" in entry:
        heading += f"; analyze {entry['analyze']['images_per_s']} img/s"
    print(heading)
    names = [name for name in (*SERVERS, "baseline") if name in entry]
    print(
        f"{'concurrency':>11} "
        + " ".join(f"{name + ' img/s':>15} {name + ' p50':>13}" for name in names)
        + f" {names[0] + ' p95/p99':>16}"
    )
    for index, first in enumerate(entry[names[0]]):
        cells = []
        for name in names:
            result = entry[name][index]
            cells.append(f"{spread(result, 'throughput'):>15} {spread(result, 'p50'):>13}")
        print(
            f"{first['concurrency']:>11} "
            + " ".join(cells)
            + f" {first['p95']:>8}/{first['p99']:<7}"
        )


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = list(report["types"])
    figure, axes = plt.subplots(1, len(types), figsize=(4 * len(types), 3.5), squeeze=False)
    for axis, type_ in zip(axes[0], types, strict=True):
        entry = report["types"][type_]
        styles = ("o-", "s--", "^-.", "d:")
        for name, style in zip((*SERVERS, "baseline"), styles, strict=True):
            if name in entry:
                levels = [r["concurrency"] for r in entry[name]]
                axis.plot(levels, [r["throughput"] for r in entry[name]], style, label=name)
        if "raw" in entry:
            axis.axhline(
                entry["raw"]["best_images_per_s"], color="gray", linestyle=":", label="raw"
            )
        axis.set_xscale("log", base=2)
        axis.set_title(type_)
        axis.set_xlabel("concurrency")
        axis.set_ylabel("images / s")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
