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


def test_key_mistakes_are_told_plainly(tmp_path: Path) -> None:
    assert run(tmp_path, "keys", "create", "--name", "newsroom").returncode == 0
    lots = run(tmp_path, "keys", "set-quota", "newsroom", "lots")
    assert lots.returncode == 2
    assert "'lots' is not a quota: give a whole number >= 0, or 'unlimited'" in lots.stderr
    assert "_quota_arg" not in lots.stderr
    assert run(tmp_path, "keys", "revoke", "newsroom").returncode == 0
    again = run(tmp_path, "keys", "revoke", "newsroom")
    assert again.returncode == 1 and "already revoked" in again.stderr


def test_demo_key_is_ordinary(tmp_path: Path) -> None:
    assert run(tmp_path, "keys", "demo").returncode == 0
    demo = next(line for line in run(tmp_path, "keys", "list").stdout.splitlines()
                if line.startswith("demo "))
    assert demo.split()[2:5] == ["100000", "no", "no"]  # quota, admin, revoked


def test_gallery_add_checks_files_before_loading_models(tmp_path: Path) -> None:
    result = run(tmp_path, "gallery", "add", "Nobody", str(tmp_path / "missing.jpg"), timeout=20)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no such file: {tmp_path / 'missing.jpg'}"


def test_keys_get_aws_credentials(tmp_path: Path) -> None:
    created = run(tmp_path, "keys", "create", "--name", "cloud", "--aws")
    assert created.returncode == 0, created.stderr
    key, access, secret = created.stdout.splitlines()
    assert key.startswith("ir_")
    assert access.startswith("aws_access_key_id = IRAK")
    assert secret.startswith("aws_secret_access_key = ")
    more = run(tmp_path, "keys", "aws", "cloud")
    assert more.returncode == 0 and len(more.stdout.splitlines()) == 2
    ids = run(tmp_path, "keys", "aws", "cloud", "--list").stdout.split()
    assert ids[0] == access.split(" = ")[1] and len(ids) == 2
    assert run(tmp_path, "keys", "aws", "cloud", "--revoke", ids[0]).returncode == 0
    assert run(tmp_path, "keys", "aws", "cloud", "--list").stdout.split() == ids[1:]
    assert run(tmp_path, "keys", "aws", "nobody").returncode == 1
    # The secret is in no file of the data folder, the database included.
    secret_value = secret.split(" = ")[1].encode()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret_value not in path.read_bytes(), path
