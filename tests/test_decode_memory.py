"""Decompression bombs: a few hundred KB of PNG that decode to gigabytes. Decoded images are
reduced to what the model needs at once, and decoding is admitted against a byte budget."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image

from models.images import decode_image, inspect_image
from server.errors import ModelUnavailableError
from server.pipeline.analysis import DecodeBudget
from server.settings import Settings
from server.store.keys import KeyStore
from tests.conftest import LiveServer, encode

MB = 1024 * 1024


def rgba_bomb(side: int = 10_000) -> bytes:
    image = Image.new("RGBA", (side, side), (200, 30, 30, 128))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


def test_a_large_png_is_reduced_to_the_models_side_and_composited_over_white() -> None:
    data = encode(Image.new("RGBA", (4000, 2000), (0, 0, 0, 0)), "PNG")
    info = inspect_image(data, 100_000_000)
    assert info.decode_bytes == 4000 * 2000 * 4
    image = decode_image(data, info, 1000)
    assert image.rgb.size == (1000, 500) and image.scale == 0.25
    assert image.rgb.getpixel((10, 10)) == (255, 255, 255)


def test_an_image_under_the_models_side_is_not_reduced() -> None:
    data = encode(Image.new("RGB", (1500, 900), (10, 20, 30)), "PNG")
    image = decode_image(data, inspect_image(data, 100_000_000), 1000)
    assert image.rgb.size == (1500, 900) and image.scale == 1.0


def test_the_decode_budget_refuses_what_does_not_fit_beside_others() -> None:
    budget = DecodeBudget(100)
    with budget.hold(500):  # alone: always fits
        with pytest.raises(ModelUnavailableError) as refused, budget.hold(1):
            pass
        assert refused.value.retry_after == 1
    with budget.hold(60), budget.hold(40):
        assert budget.in_use == 100
    assert budget.in_use == 0


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


@pytest.mark.slow
def test_four_rgba_bombs_at_once_stay_within_1_5_gb(settings: Settings, keys: KeyStore) -> None:
    bomb = rgba_bomb()
    assert len(bomb) < 2 * MB
    server = LiveServer(settings.data_dir)
    try:
        key = keys.create("bomber", quota=100)
        fields = {"apikey": key, "type": "objects", "max_labels": "5", "min_confidence": "50"}

        def warm(index: int) -> int:
            small = encode(Image.new("RGB", (64, 64), (index, 0, 0)))
            return requests.post(
                server.url, data=fields, files={"file": small}, timeout=300
            ).status_code

        # Warmed as the bombs will run, four calls side by side: the runtimes compile their
        # copies for calls beside others on first use, which is the model's memory, not the
        # decoding's.
        with ThreadPoolExecutor(max_workers=4) as pool:
            assert list(pool.map(warm, range(4))) == [200] * 4
        pid = server.process.pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak counts from now
        idle_kb = rss_kb(pid, "VmRSS")

        def post(index: int) -> requests.Response:
            # Distinct bytes each (after the PNG's end): none answered from stored results.
            return requests.post(
                server.url, data=fields, files={"file": bomb + bytes([index])}, timeout=600
            )

        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(post, range(4)))
        peak_kb = rss_kb(pid, "VmHWM")
    finally:
        server.stop()
    statuses = sorted(a.status_code for a in answers)
    assert 200 in statuses and set(statuses) <= {200, 503}, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["Retry-After"] == "1"
    assert (peak_kb - idle_kb) * 1024 < 1.5 * 1024 * MB, (peak_kb - idle_kb) // 1024


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_reducing_in_bands_equals_one_reduce(mode: str) -> None:
    import numpy as np

    from models.images import _reduce

    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = np.random.default_rng(0).integers(0, 255, (1003, 2011, channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(), mode)
    assert np.array_equal(np.asarray(_reduce(image, 670)), np.asarray(image.reduce(3)))
