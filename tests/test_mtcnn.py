"""MTCNN's batched crops give facenet-pytorch's own answers, bit for bit."""

from __future__ import annotations

import numpy as np
import torch
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
from facenet_pytorch.models.utils.detect_face import detect_face as facenet_detect_face
from PIL import Image
from torch.nn.functional import interpolate

from models.faces import PYRAMID_FACTOR, STAGE_THRESHOLDS
from models.mtcnn import area_crops, detect_face, integral_image


def test_area_crops_equal_interpolate_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    images = torch.from_numpy(rng.integers(0, 256, (2, 3, 300, 401))).float()
    count = 60
    top = torch.from_numpy(rng.integers(0, 299, count))
    left = torch.from_numpy(rng.integers(0, 400, count))
    bottom = torch.minimum(top + torch.from_numpy(rng.integers(1, 300, count)), torch.tensor(300))
    right = torch.minimum(left + torch.from_numpy(rng.integers(1, 401, count)), torch.tensor(401))
    index = torch.from_numpy(rng.integers(0, 2, count))
    table = integral_image(images)
    for size in (24, 48):
        ours = area_crops(table, index, top, bottom, left, right, size)
        expected = torch.cat([
            interpolate(images[i : i + 1, :, t:b, x0:x1], size=(size, size), mode="area")
            for i, t, b, x0, x1 in zip(index, top, bottom, left, right, strict=True)
        ])  # fmt: skip
        assert torch.equal(ours, expected)


def test_detect_face_is_facenet_pytorchs(astronaut: Image.Image, grace_hopper: Image.Image) -> None:
    nets = [net(pretrained=True).eval() for net in (PNet, RNet, ONet)]
    half = astronaut.resize((256, 256))
    for batch in ([np.asarray(astronaut)], [np.asarray(half), np.asarray(half)[:, ::-1]],
                  [np.asarray(grace_hopper.convert("RGB"))]):  # fmt: skip
        pixels = torch.from_numpy(np.ascontiguousarray(np.stack(batch)))
        args = (20, *nets, list(STAGE_THRESHOLDS), PYRAMID_FACTOR)
        with torch.inference_mode():
            boxes, points = detect_face(pixels, *args, torch.device("cpu"))
            expected_boxes, expected_points = facenet_detect_face(pixels, *args, "cpu")
        assert sum(len(b) for b in boxes) >= len(batch)  # faces found: the stages all ran
        for ours, theirs in zip(boxes + points, [*expected_boxes, *expected_points], strict=True):
            assert np.array_equal(ours, np.asarray(theirs, dtype=ours.dtype).reshape(ours.shape))
