"""`imagerecognize analyze --engine ray`: the same lines as the local engine, on a local Ray
instance and on a two-node cluster on this machine, and a resumed run adds only what is
missing. Kept light: a few small photos, few logical CPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT, encode

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

ARGS = ("--type", "detect_faces", "--type", "nsfw", "--nsfw-min-confidence", "0")


@pytest.fixture
def photos(tmp_path: Path, reference_photos: dict[str, Image.Image]) -> Path:
    root = tmp_path / "photos"
    (root / "nested").mkdir(parents=True)
    for index, (name, photo) in enumerate(sorted(reference_photos.items())):
        folder = root / "nested" if index % 2 else root
        (folder / f"{name}.jpg").write_bytes(encode(photo.resize((160, 120))))
    (root / "nested" / "notes.txt").write_text("not an image")
    return root


def analyze(tmp_path: Path, photos: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(tmp_path / "data"))
    command = [sys.executable, "-m", "server", "analyze", str(photos), *ARGS, "--out", str(out)]
    return subprocess.run(
        [*command, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )


def lines_of(path: Path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(lines, key=lambda line: (line["path"], line["type"]))


@pytest.fixture
def cluster() -> Iterator[object]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_ray_on_two_nodes_equals_local_and_resumes(
    tmp_path: Path, photos: Path, cluster: object
) -> None:
    local_out = tmp_path / "local.jsonl"
    assert analyze(tmp_path, photos, local_out).returncode == 0
    local = lines_of(local_out)
    assert len(local) == 2 * 8

    ray_out = tmp_path / "ray.jsonl"
    address = cluster.address  # type: ignore[attr-defined]
    run = analyze(tmp_path, photos, ray_out, "--engine", "ray", "--ray-address", address)
    assert run.returncode == 0, run.stderr
    assert lines_of(ray_out) == local
    assert "work on 2 Ray nodes" in run.stderr

    # Drop three lines, tear the last: the resumed run adds exactly those back.
    kept = ray_out.read_text().splitlines(keepends=True)
    ray_out.write_text("".join(kept[:-3]) + kept[-3][:20])
    again = analyze(tmp_path, photos, ray_out, "--engine", "ray", "--ray-address", address)
    assert again.returncode == 0, again.stderr
    assert lines_of(ray_out) == local
    assert "lines by status" in again.stderr and "already done" in again.stderr


def test_local_ray_instance_equals_local_engine(tmp_path: Path, photos: Path) -> None:
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert analyze(tmp_path, photos, local_out).returncode == 0
    run = analyze(tmp_path, photos, ray_out, "--engine", "ray")
    assert run.returncode == 0, run.stderr
    assert lines_of(ray_out) == lines_of(local_out)
