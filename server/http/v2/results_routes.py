"""/api/v2/results/: a key's owner deletes one of its stored results.

DELETE /api/v2/results/{id}?apikey=…    the key's own result only; audited
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from server.http.respond import V2Route, ok
from server.http.state import Service
from server.http.v2.keyed import Keyed

router = APIRouter(route_class=V2Route)


@router.delete("/api/v2/results/{result_id}")
async def delete_result(form: Keyed, service: Service, result_id: str) -> JSONResponse:
    return ok(await service.delete_result(form.key, result_id))
