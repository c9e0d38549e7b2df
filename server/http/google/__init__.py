"""The Google Cloud Vision dialect: `POST /v1/images:annotate` (REST) and, when enabled, the
gRPC `google.cloud.vision.v1.ImageAnnotator/BatchAnnotateImages`, answered by the same
service, keys and quota as /api/v2/ (docs/compat.md). Imports the service, the shared HTTP
helpers, errors, catalog, settings and telemetry."""

from server.http.google.routes import router

__all__ = ["router"]
