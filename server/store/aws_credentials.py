"""AWS-style credentials of a key (an access key id and a secret access key), with which the
AWS SDKs sign their requests to the Rekognition dialect (Signature Version 4).

Checking a signature needs the secret itself (an HMAC is recomputed from it), so unlike a key
it cannot be kept as a hash: it is kept encrypted with the server's credentials key (Fernet:
AES-128-CBC with an HMAC-SHA256), from IMAGERECOGNIZE_AWS_CREDENTIALS_KEY or, by default, a
file in the data folder created with mode 0600. The database alone does not reveal a secret;
the database and that key together do (docs/privacy.md). Secrets are shown once, when
created, and never logged or audited.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from server.settings import Settings
from server.store import audit
from server.store.db import ApiKey, AwsCredential
from server.store.keys import KeyManagementError, KeyRecord

log = logging.getLogger(__name__)

KEY_FILE_NAME = "aws-credentials.key"
# Access key ids look like AWS's (20 capitals and digits) but begin with IR, never AKIA.
ACCESS_KEY_PREFIX = "IRAK"
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True)
class IssuedCredentials:
    key_name: str
    access_key_id: str
    secret_access_key: str


def credentials_cipher(settings: Settings) -> Fernet:
    """The cipher of the secrets: IMAGERECOGNIZE_AWS_CREDENTIALS_KEY, else the key file in the
    data folder, created (mode 0600, never replaced) by the first process that needs it."""
    if settings.aws_credentials_key is not None:
        return Fernet(settings.aws_credentials_key.get_secret_value().encode())
    path = Path(settings.data_dir) / KEY_FILE_NAME
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return Fernet(path.read_bytes().strip())
    with os.fdopen(fd, "wb") as out:
        out.write(Fernet.generate_key())
        out.flush()
        os.fsync(out.fileno())
    return Fernet(path.read_bytes().strip())


def _new_access_key_id() -> str:
    return ACCESS_KEY_PREFIX + "".join(secrets.choice(_BASE32) for _ in range(16))


class AwsCredentialStore:
    def __init__(self, engine: Engine, cipher: Fernet):
        self.engine = engine
        self.cipher = cipher

    def issue(self, key_name: str, *, actor: str = audit.CLI_ACTOR) -> IssuedCredentials:
        """New credentials for the active key named ``key_name`` (a key may have several:
        rotate by issuing new ones, then revoking the key's old ones with revoke())."""
        secret = secrets.token_urlsafe(30)  # 40 characters, as AWS's secrets have
        with Session(self.engine) as session, session.begin():
            key = session.scalars(select(ApiKey).where(ApiKey.name == key_name)).first()
            if key is None or key.revoked:
                raise KeyManagementError(f"no active key named {key_name!r}")
            access_key_id = _new_access_key_id()
            session.add(
                AwsCredential(
                    access_key_id=access_key_id,
                    key_id=key.id,
                    secret_encrypted=self.cipher.encrypt(secret.encode()).decode(),
                )
            )
            # The id names the credentials; the secret is never written anywhere but here.
            audit.record(
                session,
                actor,
                audit.KEY_AWS_CREDENTIALS,
                key_name,
                {"access_key_id": access_key_id},
            )
        return IssuedCredentials(key_name, access_key_id, secret)

    def revoke(self, access_key_id: str, *, actor: str = audit.CLI_ACTOR) -> str:
        """Deletes one set of credentials; returns the name of its key."""
        with Session(self.engine) as session, session.begin():
            row = session.get(AwsCredential, access_key_id)
            if row is None:
                raise KeyManagementError(f"no credentials with access key id {access_key_id!r}")
            key = session.get(ApiKey, row.key_id)
            name = key.name if key is not None else "?"
            session.delete(row)
            audit.record(
                session,
                actor,
                audit.KEY_AWS_CREDENTIALS,
                name,
                {"access_key_id": access_key_id, "revoked": True},
            )
            return name

    def access_key_ids(self, key_name: str) -> list[str]:
        with Session(self.engine) as session:
            return list(
                session.scalars(
                    select(AwsCredential.access_key_id)
                    .join(ApiKey, ApiKey.id == AwsCredential.key_id)
                    .where(ApiKey.name == key_name)
                    .order_by(AwsCredential.created_at)
                )
            )

    def lookup(self, access_key_id: str) -> tuple[KeyRecord, str] | None:
        """The active key and secret of an access key id; None when unknown, when its key is
        revoked, or when the secret cannot be decrypted (another credentials key)."""
        with Session(self.engine) as session:
            found = session.execute(
                select(AwsCredential, ApiKey)
                .join(ApiKey, ApiKey.id == AwsCredential.key_id)
                .where(AwsCredential.access_key_id == access_key_id)
            ).first()
            if found is None:
                return None
            credential, key = found
            if key.revoked:
                return None
            try:
                secret = self.cipher.decrypt(credential.secret_encrypted.encode()).decode()
            except InvalidToken:
                log.warning(
                    "the secret of access key id %s cannot be decrypted: it was encrypted with "
                    "another credentials key (IMAGERECOGNIZE_AWS_CREDENTIALS_KEY)",
                    access_key_id,
                )
                return None
            record = KeyRecord(
                key.id, key.name, key.key_prefix, key.quota, key.is_admin, key.revoked
            )
            return record, secret
