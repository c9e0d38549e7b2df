"""AWS Signature Version 4 of a request, checked as AWS checks it: botocore's own signer
computes the signature expected from the secret, so that what boto3 and the other SDKs sign is
what is compared (no hand-written canonicalisation).

Two steps, because the secret is looked up between them: :func:`parse_authorization` reads who
signed and what (raising :class:`SignatureError` for a malformed or stale request), then
:func:`check_signature` recomputes the signature over the request as received.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "rekognition"
# AWS refuses a request signed more than 15 minutes before or after its own clock.
MAX_CLOCK_SKEW = timedelta(minutes=15)
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+"
    r"Credential=(?P<akid>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[^/\s,]+)/(?P<service>[^/\s,]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9\-;]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class SignatureError(Exception):
    """A request whose signature cannot be accepted; ``code`` is AWS's error code for it."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SignedRequest:
    access_key_id: str
    region: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str


def _header(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    wanted = name.encode("latin-1")
    for key, value in headers:
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


def parse_authorization(
    headers: list[tuple[bytes, bytes]], now: datetime | None = None
) -> SignedRequest:
    """Who signed the request (its ``Authorization`` header) and when; raises SignatureError
    for a missing or malformed signature, another service's, or a time outside 15 minutes."""
    authorization = _header(headers, "authorization")
    if not authorization:
        raise SignatureError(
            "MissingAuthenticationTokenException", "Missing Authentication Token"
        )
    if not authorization.startswith(ALGORITHM):
        raise SignatureError(
            "IncompleteSignatureException",
            f"Only the {ALGORITHM} algorithm (Signature Version 4) is supported",
        )
    match = _AUTHORIZATION.match(authorization.strip())
    if match is None:
        raise SignatureError(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'",
        )
    signed = tuple(match["signed"].split(";"))
    if "host" not in signed:
        raise SignatureError(
            "IncompleteSignatureException", "The host header must be among the signed headers"
        )
    amz_date = _header(headers, "x-amz-date")
    if amz_date is None or "x-amz-date" not in signed:
        raise SignatureError(
            "IncompleteSignatureException", "A signed X-Amz-Date header is required"
        )
    try:
        signed_at = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError(
            "IncompleteSignatureException", "X-Amz-Date must be in the form YYYYMMDDTHHMMSSZ"
        ) from None
    if amz_date[:8] != match["date"]:
        raise SignatureError(
            "InvalidSignatureException",
            "The credential scope's date does not match X-Amz-Date",
        )
    if match["service"] != SERVICE:
        raise SignatureError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{SERVICE}'",
        )
    now = now or datetime.now(UTC)
    if abs(now - signed_at) > MAX_CLOCK_SKEW:
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than "
            f"{(now - MAX_CLOCK_SKEW).strftime(_AMZ_DATE)} or later than "
            f"{(now + MAX_CLOCK_SKEW).strftime(_AMZ_DATE)} (15 minutes of clock skew allowed)",
        )
    return SignedRequest(match["akid"], match["region"], signed, match["sig"], amz_date)


def check_signature(
    signed: SignedRequest,
    secret: str,
    *,
    method: str,
    raw_path: bytes,
    query_string: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    """Raises SignatureError unless ``signed.signature`` is the one ``secret`` gives this
    request: its method, path, query, signed headers and body, as received."""
    content_sha256 = _header(headers, "x-amz-content-sha256")
    # botocore takes this header's value as the body's hash without checking it; a replay
    # with another body and the same header would pass. So the body is hashed here.
    if content_sha256 is not None and content_sha256 != hashlib.sha256(body).hexdigest():
        raise SignatureError(
            "InvalidSignatureException",
            "The provided 'x-amz-content-sha256' header does not match what was computed",
        )
    rebuilt = HTTPHeaders()
    for name in signed.signed_headers:
        wanted = name.encode("latin-1")
        for key, value in headers:
            if key.lower() == wanted:
                rebuilt.add_header(name, value.decode("latin-1").strip())
    if "host" not in rebuilt:
        raise SignatureError("IncompleteSignatureException", "The signed host header is missing")
    path = raw_path.decode("latin-1") or "/"
    query = query_string.decode("latin-1")
    # http on purpose: botocore hashes the payload itself only for http URLs.
    url = f"http://{rebuilt['host']}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, data=body)
    request.headers = rebuilt
    request.context["timestamp"] = signed.amz_date
    signer = SigV4Auth(Credentials(signed.access_key_id, secret), SERVICE, signed.region)
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    if not hmac.compare_digest(expected, signed.signature):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
