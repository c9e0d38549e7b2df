"""`imagerecognize analyze` with the local engine: every file reported with the API's status,
answers equal to the API's, resumable after SIGKILL and a torn line, progress and summary."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from server.collection.analyze import job_from, run_analyze
from server.collection.files import ResultsFile, Tally, walk
from tests.conftest import ROOT, encode, make_settings, run_cli

TYPES = ("objects", "detect_faces", "nsfw")
PARAM_ARGS = ("--max-labels", "10", "--min-confidence", "30", "--nsfw-min-confidence", "0")
API_PARAMS = {
    "objects": {"max_labels": "10", "min_confidence": "30"},
    "nsfw": {"nsfw_min_confidence": "0"},
}


def png_bomb() -> bytes:
    """A small PNG whose header claims 30,000 x 30,000 pixels (over the pixel limit)."""
    data = encode(Image.new("L", (8, 8)), "PNG")
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", 30_000, 30_000)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return data[:16] + bytes(ihdr) + crc + data[33:]


@pytest.fixture
def collection(tmp_path: Path, reference_photos: dict[str, Image.Image]) -> Path:
    """Real photos in nested folders, a copy under another name, and files that are not
    (usable) images: each with the status the API gives it."""
    root = tmp_path / "collection"
    (root / "2019" / "march").mkdir(parents=True)
    (root / "scans").mkdir()
    small = {name: photo.resize((320, 240)) for name, photo in reference_photos.items()}
    (root / "astronaut.jpg").write_bytes(encode(small["astronaut"], quality=90))
    (root / "2019" / "coffee.png").write_bytes(encode(small["coffee"], "PNG"))
    (root / "2019" / "march" / "hopper.jpg").write_bytes(encode(small["grace_hopper"]))
    shutil.copy(root / "astronaut.jpg", root / "scans" / "astronaut-copy.jpg")
    jpeg = encode(small["chelsea"])
    (root / "scans" / "corrupt.jpg").write_bytes(jpeg[:3] + b"\x00" * 64 + jpeg[-200:])
    (root / "scans" / "anim.gif").write_bytes(encode(small["rocket"], "GIF"))
    (root / "scans" / "empty.jpg").write_bytes(b"")
    (root / "scans" / "notes.txt").write_text("not an image\n")
    (root / "scans" / "bomb.png").write_bytes(png_bomb())
    os.symlink("..", root / "2019" / "march" / "up")  # a loop
    os.symlink("missing.jpg", root / "scans" / "dangling.jpg")  # unreadable
    return root


EXPECTED = {
    "astronaut.jpg": 200,
    "2019/coffee.png": 200,
    "2019/march/hopper.jpg": 200,
    "scans/astronaut-copy.jpg": 200,
    "scans/corrupt.jpg": 412,
    "scans/anim.gif": 415,
    "scans/empty.jpg": 412,
    "scans/notes.txt": 415,
    "scans/bomb.png": 413,
    "2019/march/up": 412,
    "scans/dangling.jpg": 412,
}


@pytest.mark.slow
def test_walk_is_stable_and_reports_loops_and_unreadable_files(collection: Path) -> None:
    found = list(walk([str(collection)]))
    assert [os.path.relpath(f.path, collection) for f in found] == sorted(
        EXPECTED, key=lambda name: name.split("/")
    )
    problems = {os.path.relpath(f.path, collection): f.problem for f in found if f.problem}
    assert problems["2019/march/up"].status_message == "Invalid file: symlink loop"
    assert set(problems) == {"2019/march/up"}  # the dangling link is found out when read


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def analyze(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(data_dir, "analyze", *args, timeout=600)


@pytest.mark.slow
def test_every_file_reported_with_the_apis_answer(
    tmp_path: Path, collection: Path, client: TestClient, apikey: str
) -> None:
    out = tmp_path / "results.jsonl"
    types = [arg for t in TYPES for arg in ("--type", t)]
    run = analyze(tmp_path / "data", str(collection), *types, "--out", str(out), *PARAM_ARGS)
    assert run.returncode == 0, run.stderr
    lines = read_lines(out)
    by_file: dict[str, dict[str, dict]] = {}
    for line in lines:
        relative = os.path.relpath(line["path"], collection)
        assert line["type"] not in by_file.setdefault(relative, {}), "a duplicate line"
        by_file[relative][line["type"]] = line
    assert set(by_file) == set(EXPECTED)
    for relative, status in EXPECTED.items():
        for type_ in TYPES:
            line = by_file[relative][type_]
            assert line["status"] == status, (relative, type_, line["status_message"])
            assert (line["data"] is None) == (status != 200)
    # Every answer is the API's for the same bytes, errors included.
    for relative, lines_of_file in by_file.items():
        path = collection / relative
        if not path.is_file():
            continue
        content = path.read_bytes()
        for type_, line in lines_of_file.items():
            assert line["sha256"] == hashlib.sha256(content).hexdigest()
            body = client.post(
                "/api/v2/",
                data={"apikey": apikey, "type": type_, **API_PARAMS.get(type_, {})},
                files={"file": ("f", content)},
            ).json()
            assert (line["status"], line["status_message"]) == (
                body["status"],
                body["status_message"],
            )
            if body["data"] is not None:
                for field in ("quota", "id", "cached", "elapsed_ms"):
                    body["data"].pop(field)
            assert line["data"] == body["data"], (relative, type_)
    assert "analyze: 11 files analysed" in run.stderr and "200: 12" in run.stderr
    assert "images/s" in run.stderr

    again = analyze(tmp_path / "data", str(collection), *types, "--out", str(out), *PARAM_ARGS)
    assert again.returncode == 0 and read_lines(out) == lines  # nothing added
    assert "0 files analysed, 11 already done" in again.stderr


@pytest.mark.slow
def test_missing_parameter_is_a_usage_error_before_anything_runs(
    tmp_path: Path, collection: Path
) -> None:
    out = tmp_path / "results.jsonl"
    run = analyze(tmp_path / "data", str(collection), "--type", "objects", "--out", str(out))
    assert run.returncode == 2
    assert "--max-labels is required with --type objects" in run.stderr
    assert not out.exists()
    bad = analyze(
        tmp_path / "data", str(collection), "--type", "nsfw", "--nsfw-min-confidence", "101",
        "--out", str(out),
    )  # fmt: skip
    assert bad.returncode == 2 and "must be an integer from 0 to 100" in bad.stderr


@pytest.mark.slow
def test_unwritable_output_fails_in_one_line(tmp_path: Path, collection: Path) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "results.jsonl"  # under a file: cannot be created
    run = analyze(tmp_path / "data", str(collection), "--type", "detect_faces", "--out", str(out))
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[0].startswith(f"error: cannot write {out}")


def test_torn_last_line_is_cut_and_lines_are_never_duplicated(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    whole = {"path": "/a", "sha256": "00", "type": "nsfw", "params": {}, "status": 200}
    out.write_text(json.dumps(whole) + "\n" + '{"path": "/b", "sha2')
    results = ResultsFile(out)
    try:
        assert results.repaired == len('{"path": "/b", "sha2')
        assert out.read_text() == json.dumps(whole) + "\n"
        assert results.append([whole]) == 0  # already there
        other = dict(whole, path="/b")
        assert results.append([other, other]) == 1
    finally:
        results.close()
    assert [line["path"] for line in read_lines(out)] == ["/a", "/b"]


def distinct_photos(folder: Path, photo: Image.Image, count: int) -> None:
    folder.mkdir(parents=True)
    base = photo.resize((96, 96))
    for index in range(count):
        image = base.copy()
        image.putpixel((index % 96, index // 96), (index % 256, 0, 0))
        sub = folder / f"part{index % 3}"
        sub.mkdir(exist_ok=True)
        (sub / f"{index:04d}.png").write_bytes(encode(image, "PNG"))


@pytest.mark.slow
def test_sigkill_then_resume_gives_each_line_exactly_once(
    tmp_path: Path, astronaut: Image.Image
) -> None:
    photos = tmp_path / "photos"
    distinct_photos(photos, astronaut, 400)
    out = tmp_path / "results.jsonl"
    command = [
        sys.executable, "-m", "server", "analyze", str(photos), "--type", "nsfw",
        "--type", "detect_faces", "--nsfw-min-confidence", "0", "--out", str(out),
    ]  # fmt: skip
    env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(tmp_path / "data"))
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 20:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    written = out.read_bytes().count(b"\n")
    assert 20 <= written < 800
    with out.open("ab") as handle:  # as if killed in the middle of a line
        handle.write(b'{"path": "' + str(photos).encode() + b'/part0/00')

    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "repaired" in again.stderr
    lines = read_lines(out)
    keys = [(line["path"], line["type"]) for line in lines]
    assert len(keys) == len(set(keys)) == 800
    assert {line["status"] for line in lines} == {200}
    assert "already done" in again.stderr


def test_progress_bar_and_summary(
    tmp_path: Path, astronaut: Image.Image, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    distinct_photos(photos, astronaut, 6)
    (photos / "readme.txt").write_text("hello")
    settings = make_settings(tmp_path / "data")
    job = job_from([str(photos)], ["detect_faces"], {"detect_faces": {}}, str(tmp_path / "o"))
    assert run_analyze(job, settings, progress=True) == 0
    err = capsys.readouterr().err
    assert "7/7" in err and "failed=1" in err  # tqdm's bar: files done of all, failures
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("analyze: 7 files analysed, 0 already done")
    assert "200: 6, 415: 1" in summary and "images/s" in summary


def test_tally_counts_statuses() -> None:
    tally = Tally(show=False)
    tally.open_bar()
    tally.add([{"status": 200}, {"status": 415}])
    tally.add([])
    assert (tally.files, tally.skipped, tally.failed) == (1, 1, 1)
    assert "200: 1, 415: 1" in tally.summary()
