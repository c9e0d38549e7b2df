"""AWS-style credentials: issued to an existing key, the secret kept only encrypted with the
server's credentials key, found again by access key id while the key is active."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.settings import Settings
from server.store.aws_credentials import (
    KEY_FILE_NAME,
    AwsCredential,
    AwsCredentialStore,
    credentials_cipher,
)
from server.store.db import AuditEntry, open_database
from server.store.keys import KeyManagementError, KeyStore


def test_secrets_are_kept_encrypted_and_found_by_access_key_id(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    engine = open_database(settings.resolved_database_url)
    keys = KeyStore(engine)
    keys.create("newsroom", quota=5)
    store = AwsCredentialStore(engine, credentials_cipher(settings))
    issued = store.issue("newsroom")
    assert issued.access_key_id.startswith("IRAK") and len(issued.access_key_id) == 20
    assert len(issued.secret_access_key) == 40

    key_file = settings.data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with Session(engine) as session:
        stored = session.scalars(select(AwsCredential.secret_encrypted)).one()
    assert issued.secret_access_key not in stored
    assert (tmp_path / "data").joinpath("imagerecognize.db").read_bytes().find(
        issued.secret_access_key.encode()
    ) == -1

    # Another process (the same key file) finds it; another credentials key does not.
    again = AwsCredentialStore(engine, credentials_cipher(settings))
    found = again.lookup(issued.access_key_id)
    assert found is not None
    key, secret = found
    assert key.name == "newsroom" and secret == issued.secret_access_key
    other = AwsCredentialStore(engine, Fernet(Fernet.generate_key()))
    assert other.lookup(issued.access_key_id) is None
    assert store.lookup("IRAKNOTISSUEDNOTISSU") is None
    assert store.access_key_ids("newsroom") == [issued.access_key_id]

    # Audited by access key id, never with the secret.
    with Session(engine) as session:
        entries = session.execute(
            select(AuditEntry.action, AuditEntry.subject, AuditEntry.details)
        ).all()
    assert ("key.aws_credentials", "newsroom", {"access_key_id": issued.access_key_id}) in [
        tuple(entry) for entry in entries
    ]
    assert issued.secret_access_key not in repr(entries)

    keys.revoke("newsroom")
    assert store.lookup(issued.access_key_id) is None
    with pytest.raises(KeyManagementError):
        store.issue("newsroom")
    with pytest.raises(KeyManagementError):
        store.issue("nobody")
    engine.dispose()


def test_the_credentials_key_can_be_a_setting(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    settings = Settings(data_dir=tmp_path / "data", aws_credentials_key=key)
    token = credentials_cipher(settings).encrypt(b"x")
    assert Fernet(key.encode()).decrypt(token) == b"x"
    assert not (settings.data_dir / KEY_FILE_NAME).exists()
