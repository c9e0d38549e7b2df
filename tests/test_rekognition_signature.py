"""SigV4 as the Rekognition dialect checks it, against requests signed by botocore itself."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from server.http.rekognition.signature import SignatureError, check_signature, parse_authorization

AKID, SECRET = "IRAKTESTTESTTESTTEST", "s3cr3t/s3cr3t+s3cr3t"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


BODY = b'{"Image": {"Bytes": "aGVsbG8="}}'


def signed(
    body: bytes = BODY,
    *,
    secret: str = SECRET,
    region: str = "eu-west-1",
    service: str = "rekognition",
    at: datetime | None = None,
    content_sha256: bool = False,
) -> list[tuple[bytes, bytes]]:
    request = AWSRequest(
        method="POST",
        url="http://localhost:8000/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "RekognitionService.DetectLabels",
        },
    )
    if content_sha256:
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    signer = SigV4Auth(Credentials(AKID, secret), service, region)
    # add_auth() stamps botocore's current time: another time for an expired signature.
    with mock.patch("botocore.auth.get_current_datetime", return_value=at or utcnow()):
        signer.add_auth(request)
    headers = [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    return [*headers, (b"host", b"localhost:8000")]


def verify(headers: list[tuple[bytes, bytes]], body: bytes = BODY, secret: str = SECRET) -> None:
    parsed = parse_authorization(headers)
    assert parsed.access_key_id == AKID
    check_signature(
        parsed, secret, method="POST", raw_path=b"/", query_string=b"", headers=headers, body=body
    )


def test_botocore_signatures_are_accepted_in_any_region() -> None:
    verify(signed())
    verify(signed(region="us-east-1"))
    verify(signed(content_sha256=True))


@pytest.mark.parametrize(
    ("headers", "body", "secret", "code"),
    [
        (signed(), BODY, "wrong", "InvalidSignatureException"),
        (signed(), BODY.replace(b"aGVs", b"aGVt"), SECRET, "InvalidSignatureException"),
        # The JS SDK's way: a signed hash header, and a replay with another body.
        (signed(content_sha256=True), b"{}", SECRET, "InvalidSignatureException"),
        (signed(service="s3"), BODY, SECRET, "InvalidSignatureException"),
        ([(b"host", b"localhost")], BODY, SECRET, "MissingAuthenticationTokenException"),
    ],
)
def test_wrong_requests_are_refused(headers, body, secret, code) -> None:
    with pytest.raises(SignatureError) as refused:
        verify(headers, body, secret)
    assert refused.value.code == code


def test_signatures_older_than_15_minutes_expire() -> None:
    old = utcnow() - timedelta(minutes=20)
    with pytest.raises(SignatureError, match="Signature expired"):
        verify(signed(at=old))
    verify(signed(at=utcnow() - timedelta(minutes=10)))
