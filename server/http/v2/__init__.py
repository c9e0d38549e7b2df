"""The imagerecognize.com v2 dialect: `/api/v2/`, its gallery and its stored results. Imports
the service, the shared HTTP helpers, errors, catalog, settings and telemetry; nothing below
the service."""

from fastapi import APIRouter

from server.http.v2 import gallery_routes, results_routes, routes

router = APIRouter()
for part in (routes.router, gallery_routes.router, results_routes.router):
    router.include_router(part)
