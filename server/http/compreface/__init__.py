"""The CompreFace dialect: everything under `/api/v1/` (recognition, detection,
verification), answered by the same service as /api/v2/ (docs/compat.md). Imports the service,
the shared HTTP helpers, errors, catalog, settings and telemetry; nothing below the service."""

from server.http.compreface.routes import router

__all__ = ["router"]
