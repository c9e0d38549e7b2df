"""The `imagerecognize` command's key management."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli as run

pytestmark = pytest.mark.slow  # real models or live servers


def test_keys_lifecycle(tmp_path: Path) -> None:
    created = run(tmp_path, "keys", "create", "--name", "newsroom", "--quota", "5")
    assert created.returncode == 0
    key = created.stdout.strip()
    assert key.startswith("ir_") and "\n" not in key  # the key alone on stdout
    database = (tmp_path / "imagerecognize.db").read_bytes()
    assert key.encode() not in database  # stored hashed

    assert run(tmp_path, "keys", "create", "--name", "newsroom").returncode == 1
    listing = run(tmp_path, "keys", "list").stdout
    assert "newsroom" in listing and key not in listing and " 5 " in listing

    assert run(tmp_path, "keys", "set-quota", "newsroom", "7").returncode == 0
    assert " 7 " in run(tmp_path, "keys", "list").stdout
    assert run(tmp_path, "keys", "set-quota", "nobody", "7").returncode == 1

    assert run(tmp_path, "keys", "revoke", key).returncode == 0
    assert "yes" in run(tmp_path, "keys", "list").stdout.splitlines()[1]


def test_demo_key_is_created_once(tmp_path: Path) -> None:
    first = run(tmp_path, "keys", "demo")
    second = run(tmp_path, "keys", "demo")
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout and first.stdout.startswith("ir_")
    assert oct((tmp_path / "demo-key.txt").stat().st_mode & 0o777) == "0o600"


def test_models_list(tmp_path: Path) -> None:
    listing = run(tmp_path, "models", "list").stdout
    assert "detect_faces" in listing and "mtcnn" in listing and "present" in listing


def test_models_fetch_refuses_unknown_and_unverifiable_weights(tmp_path: Path) -> None:
    unknown = run(tmp_path, "models", "fetch", "no-such-weights")
    assert unknown.returncode == 2 and "unknown weights" in unknown.stderr
    # The manifest has no digest for this file: nothing is downloaded without one.
    unverifiable = run(tmp_path, "models", "fetch", "facenet_vggface2")
    assert unverifiable.returncode == 1 and "--sha256" in unverifiable.stderr
    assert not (tmp_path / "models").exists()
