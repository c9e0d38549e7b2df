"""`imagerecognize analyze --engine ray`: the same lines as the local engine, on a local Ray
instance and on a two-node cluster on this machine, and a resumed run adds only what is
missing; every type at once on 2 CPUs, with its progress bar; a cluster that cannot run the
job refused at once. Kept light: a few small photos, few logical CPUs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
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


def run(tmp_path: Path, *command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """A Python subprocess on the data folder under ``tmp_path``; a hang fails the test."""
    env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def analyze(
    tmp_path: Path, photos: Path, out: Path, *extra: str, args: tuple[str, ...] = ARGS,
    timeout: float = 900,
) -> subprocess.CompletedProcess:
    command = ["-m", "server", "analyze", str(photos), *args, "--out", str(out), *extra]
    return run(tmp_path, *command, timeout=timeout)


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


EVERY_TYPE = (
    *("--type", "objects", "--max-labels", "10", "--min-confidence", "30"),
    *("--type", "detect_faces", "--type", "nsfw", "--nsfw-min-confidence", "0"),
    *("--type", "detect_text", "--type", "celebrities"),
)
EVERY_PARAMS = {
    "objects": {"max_labels": 10, "min_confidence": 30},
    "detect_faces": {},
    "nsfw": {"nsfw_min_confidence": 0},
    "detect_text": {},
    "celebrities": {},
}
# The job of EVERY_TYPE through run_analyze with its progress bar on (a subprocess's stderr
# is no terminal). argv: Ray's address, the folder, the results file.
WITH_BAR = textwrap.dedent(
    f"""
    import sys
    from server.collection.analyze import job_from, run_analyze
    from server.settings import Settings

    params = {EVERY_PARAMS!r}
    job = job_from([sys.argv[2]], list(params), params, sys.argv[3])
    sys.exit(run_analyze(job, Settings(), "ray", sys.argv[1], progress=True))
    """
)


@pytest.fixture
def two_cpus() -> Iterator[str]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    yield cluster.address
    cluster.shutdown()


def test_every_type_at_once_on_two_cpus_with_a_moving_bar(
    tmp_path: Path, photos: Path, two_cpus: str
) -> None:
    # Five model actors and the read and decode tasks on two logical CPUs: before their
    # reservations were fitted, the actors took both and the job waited for ever.
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    local = analyze(tmp_path, photos, local_out, args=EVERY_TYPE)
    assert local.returncode == 0, local.stderr
    assert len(lines_of(local_out)) == 5 * 8
    ray_run = run(tmp_path, "-c", WITH_BAR, two_cpus, str(photos), str(ray_out))
    assert ray_run.returncode == 0, ray_run.stderr
    assert lines_of(ray_out) == lines_of(local_out)
    # tqdm's bar: loading, then files done of all, some before the last.
    counts = {int(done) for done in re.findall(r"\b(\d+)/8\b", ray_run.stderr)}
    assert 8 in counts and counts & set(range(1, 8)), ray_run.stderr
    assert "loading models" in ray_run.stderr


def test_a_cluster_that_cannot_run_the_job_is_refused_at_once(
    tmp_path: Path, photos: Path
) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        # A hang fails here (the timeout) instead of blocking the suite.
        refused = analyze(
            tmp_path, photos, tmp_path / "out.jsonl", "--engine", "ray", "--ray-address",
            cluster.address, timeout=120,
        )
    finally:
        cluster.shutdown()
    assert refused.returncode == 1, refused.stderr
    needs = "the Ray cluster has no CPU: this job needs at least one node with a logical CPU"
    assert needs in refused.stderr and "2 model actors" in refused.stderr
