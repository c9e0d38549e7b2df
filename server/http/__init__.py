"""HTTP: the FastAPI app, one sub-package per API dialect (v2), the streamed upload, protocol
limits, CORS, the page and OpenAPI. May import every layer below; nothing imports it but the CLI."""
