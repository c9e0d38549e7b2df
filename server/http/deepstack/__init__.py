"""The DeepStack / CodeProject.AI dialect: /v1/vision/* routes answered by the same service as
/api/v2/ (docs/compat.md). Imports the service, the shared HTTP helpers, errors, catalog,
settings and telemetry; nothing below the service."""

from server.http.deepstack.routes import router

__all__ = ["router"]
