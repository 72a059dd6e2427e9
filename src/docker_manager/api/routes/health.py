"""`/healthz`: the one route without a token. It tells whether the engine answers, nothing more."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from docker_manager.api.deps import SystemDep
from docker_manager.schemas.system import HealthResult

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=HealthResult)
async def healthz(system: SystemDep) -> JSONResponse:
    result = await system.health()
    return JSONResponse(result, status_code=200 if result["status"] == "ok" else 503)
