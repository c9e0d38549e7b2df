"""detect_faces' MTCNN cascade: facenet-pytorch's detect_face against models/mtcnn.py's
(batched crops), on the same 1024 x 768 JPEGs' detection images, interleaved; checks that
both give the same boxes and landmarks.

    .venv/bin/python scripts/bench_mtcnn.py --images 8 --rounds 3 [--batch 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main() -> None:
    from facenet_pytorch.models.utils.detect_face import detect_face as facenet_detect_face

    from models.device import choose_device, stack_to_device
    from models.faces import PYRAMID_FACTOR, STAGE_THRESHOLDS, MtcnnFaceDetector
    from models.images import decode_image, inspect_image
    from models.mtcnn import detect_face
    from scripts.bench import distinct_jpegs
    from server.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    settings = Settings(data_dir=Path(tempfile.mkdtemp()))
    torch.set_num_threads(settings.torch_threads)
    device = choose_device(settings.device)
    model = MtcnnFaceDetector(device, settings.model_options())
    model.load()
    pixels = [
        model.preprocess(decode_image(d, inspect_image(d, 10**9), model.input_max_side)).pixels
        for d in distinct_jpegs(args.images)
    ]
    batches = [pixels[i : i + args.batch] for i in range(0, len(pixels), args.batch)]
    pnet, rnet, onet = model._nets
    cascade = (model.min_face_size, pnet, rnet, onet, list(STAGE_THRESHOLDS), PYRAMID_FACTOR)
    times: dict[str, list[float]] = {"facenet-pytorch": [], "batched crops": []}
    with torch.inference_mode():
        for _round in range(args.rounds):
            for name in times:
                started = time.perf_counter()
                found = []
                for batch in batches:
                    inputs = stack_to_device(batch, device)
                    if name == "facenet-pytorch":
                        boxes, _points = facenet_detect_face(inputs, *cascade, device)
                        boxes = [np.asarray(b, dtype=np.float32).reshape(-1, 5) for b in boxes]
                    else:
                        boxes, _points = detect_face(inputs, *cascade, device)
                    found.extend(boxes)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(1000 * (time.perf_counter() - started) / len(pixels))
                if name == "facenet-pytorch":
                    reference = found
                elif not all(np.array_equal(a, b) for a, b in zip(found, reference, strict=True)):
                    raise SystemExit("the two cascades disagree")
    print(f"{device}, batch {args.batch}, {len(pixels)} images, {args.rounds} rounds interleaved")
    for name, values in times.items():
        print(f"  {name:<16} ms/image: " + ", ".join(f"{v:.0f}" for v in values))


if __name__ == "__main__":
    main()
