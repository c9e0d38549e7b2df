"""Service-account credentials, verified offline: a client built from a service-account key
file (``from_service_account_file``, or GOOGLE_APPLICATION_CREDENTIALS) signs a JWT itself
and sends it as ``authorization: Bearer``, with no call to Google. The operator registers
such files (IMAGERECOGNIZE_GOOGLE_SERVICE_ACCOUNTS: file → the name of one of our keys, which
the calls are charged to); the token is checked with the file's key (signature, issuer and
subject the account's email, audience Vision's, not expired), with google-auth (the `grpc`
extra brings it)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

AUDIENCES = ("https://vision.googleapis.com/", "https://vision.googleapis.com")
CLOCK_SKEW_S = 60


@dataclass(frozen=True)
class Account:
    email: str
    key_id: str
    public_pem: bytes
    key_name: str  # our key the calls are charged to


def _account(path: Path, key_name: str) -> Account:
    from cryptography.hazmat.primitives import serialization

    info = json.loads(path.read_text())
    private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Account(info["client_email"], info["private_key_id"], public_pem, key_name)


class ServiceAccounts:
    """The registered accounts, read once."""

    def __init__(self, files: dict[str, str]):
        self.accounts: dict[str, Account] = {}
        for path, key_name in files.items():
            account = _account(Path(path), key_name)
            self.accounts[account.key_id] = account

    def key_name(self, token: str) -> str | None:
        """The name of our key a token's account is charged to; None unless the token is one
        of a registered account, valid now, for Vision."""
        from google.auth import exceptions, jwt

        try:
            header = jwt.decode_header(token)
            account = self.accounts.get(header.get("kid", ""))
            if account is None:
                return None
            claims = jwt.decode(
                token,
                certs={account.key_id: account.public_pem},
                audience=list(AUDIENCES),
                clock_skew_in_seconds=CLOCK_SKEW_S,
            )
        except (exceptions.GoogleAuthError, ValueError):
            return None
        if claims.get("iss") != account.email or claims.get("sub") != account.email:
            return None
        return account.key_name


_loaded: dict[tuple[tuple[str, str], ...], ServiceAccounts] = {}


def registered(files: dict[str, str]) -> ServiceAccounts | None:
    """The accounts of the setting, read on first use; None when none is registered or
    they cannot be read (logged)."""
    if not files:
        return None
    marker = tuple(sorted(files.items()))
    if marker not in _loaded:
        try:
            _loaded[marker] = ServiceAccounts(files)
        except (OSError, ValueError, KeyError, TypeError, ImportError) as exc:
            log.error("IMAGERECOGNIZE_GOOGLE_SERVICE_ACCOUNTS cannot be read: %s", exc)
            return None
    return _loaded[marker]
