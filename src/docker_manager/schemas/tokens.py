"""Bodies and answers of `/auth/tokens`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from docker_manager.auth import Scope
from docker_manager.schemas.common import ResponseModel, StrictModel


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


class WhoAmI(BaseModel):
    token_id: str
    name: str
    scopes: list[str]
