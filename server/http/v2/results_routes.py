"""/api/v2/results/: a key's owner deletes one of its stored results.

DELETE /api/v2/results/{id}?apikey=…    the key's own result only; audited
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from server.http.respond import respond
from server.http.state import State
from server.http.v2.keyed import keyed_upload

router = APIRouter()


@router.delete("/api/v2/results/{result_id}")
async def delete_result(request: Request, state: State, result_id: str) -> JSONResponse:
    async def work() -> Any:
        _, key = await keyed_upload(request, state)
        return await state.service.delete(key, result_id)

    return await respond(request, work)
