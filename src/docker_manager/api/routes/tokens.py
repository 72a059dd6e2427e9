"""`/auth/tokens`: token management (admin). The CLI offers the same: `docker-manager token ...`."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import Field

from docker_manager.api.deps import AdminAccess, ServicesDep
from docker_manager.auth import Scope
from docker_manager.schemas.common import ResponseModel, StrictModel

router = APIRouter(prefix="/auth", tags=["auth"])


class CreateTokenRequest(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,100}$")
    scopes: list[Scope] = Field(min_length=1)
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class TokenView(ResponseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class CreatedToken(TokenView):
    token: str = Field(description="The secret. Shown this once; only its hash is stored.")


@router.get("/tokens", response_model=list[TokenView])
async def list_tokens(services: ServicesDep, _: AdminAccess) -> list[TokenView]:
    return [TokenView(**asdict(t)) for t in await services.tokens.list()]


@router.post("/tokens", response_model=CreatedToken, status_code=201)
async def create_token(body: CreateTokenRequest, services: ServicesDep, _: AdminAccess) -> CreatedToken:
    expires = datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    info, secret = await services.tokens.create(
        name=body.name, scopes=frozenset(body.scopes), expires_at=expires
    )
    return CreatedToken(**asdict(info), token=secret)


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(
    token_id: Annotated[str, Path(pattern=r"^[a-f0-9]{16}$")], services: ServicesDep, _: AdminAccess
) -> None:
    await services.tokens.revoke(token_id)
