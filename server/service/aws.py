"""What an AWS-speaking dialect needs beyond analyses (the ApplicationService holds one):
the key and secret behind a request's access key id (to check its signature), images read
from an S3-compatible store the operator configured, and the collections' faces."""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from server.service.face_collections import FaceCollections
from server.settings import Settings
from server.store.aws_credentials import AwsCredentialStore, credentials_cipher
from server.store.gallery import Gallery
from server.store.keys import KeyRecord

log = logging.getLogger(__name__)


class S3ObjectError(Exception):
    """An S3 image that cannot be read; the message is safe to show."""


class ImageObjectTooLargeError(S3ObjectError):
    pass


class AwsSupport:
    def __init__(self, engine: Engine, settings: Settings, gallery: Gallery):
        self.engine = engine
        self.settings = settings
        self.collections = FaceCollections(gallery)
        self._credentials: AwsCredentialStore | None = None
        self._s3: Any = None
        self._s3_lock = threading.Lock()  # boto3's default session makes clients one at a time

    @property
    def credentials(self) -> AwsCredentialStore:
        # On first use: a server never asked in AWS's terms makes no credentials key file.
        if self._credentials is None:
            self._credentials = AwsCredentialStore(self.engine, credentials_cipher(self.settings))
        return self._credentials

    async def signing_key(self, access_key_id: str) -> tuple[KeyRecord, str] | None:
        """The active key and the secret of an access key id; None when unknown."""
        return await run_in_threadpool(lambda: self.credentials.lookup(access_key_id))

    @property
    def reads_s3(self) -> bool:
        return self.settings.s3_endpoint_url is not None

    def _client(self) -> Any:
        with self._s3_lock:
            return self._made_client()

    def _made_client(self) -> Any:
        if self._s3 is None:
            try:
                import boto3  # the `s3` extra: only a server configured to read S3 needs it
            except ImportError:
                log.error("IMAGERECOGNIZE_S3_ENDPOINT_URL is set but boto3 is not installed")
                raise S3ObjectError(
                    "This server is configured to read S3 images but lacks boto3 (the s3 extra)"
                ) from None
            from botocore.config import Config

            secret = self.settings.s3_secret_access_key
            self._s3 = boto3.client(
                "s3",
                endpoint_url=self.settings.s3_endpoint_url,
                aws_access_key_id=self.settings.s3_access_key_id,
                aws_secret_access_key=None if secret is None else secret.get_secret_value(),
                region_name=self.settings.s3_region,
                config=Config(retries={"mode": "standard", "max_attempts": 2}),
            )
        return self._s3

    async def read_s3_object(
        self, bucket: str, name: str, version: str | None, max_bytes: int
    ) -> bytes:
        """An object's bytes from the configured S3-compatible store, at most ``max_bytes``."""
        if not self.reads_s3:
            raise S3ObjectError(
                "This server reads images only from the request (Image.Bytes); no "
                "S3-compatible store is configured (IMAGERECOGNIZE_S3_ENDPOINT_URL)"
            )
        return await run_in_threadpool(self._read, bucket, name, version, max_bytes)

    def _read(self, bucket: str, name: str, version: str | None, max_bytes: int) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"VersionId": version} if version else {}
        try:
            found = self._client().get_object(Bucket=bucket, Key=name, **extra)
            if int(found.get("ContentLength") or 0) > max_bytes:
                found["Body"].close()
                raise ImageObjectTooLargeError("Image size is too large.")
            data = found["Body"].read(max_bytes + 1)
            found["Body"].close()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise S3ObjectError(f"Unable to get object metadata from S3 ({code})") from None
        except BotoCoreError as exc:
            log.warning("reading s3://%s/%s failed: %s", bucket, name, exc)
            raise S3ObjectError("Unable to reach the S3-compatible store") from None
        if len(data) > max_bytes:
            raise ImageObjectTooLargeError("Image size is too large.")
        return data
