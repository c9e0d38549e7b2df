"""The Amazon Rekognition dialect: AWS JSON 1.1 on `POST /` (X-Amz-Target
RekognitionService.<Operation>), signed with Signature Version 4, answered by the same
service as /api/v2/ (docs/compat.md). Imports the service, the shared HTTP helpers, errors,
catalog, settings and telemetry; nothing below the service."""

from server.http.rekognition.routes import router

__all__ = ["router"]
