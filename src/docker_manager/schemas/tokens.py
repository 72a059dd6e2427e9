"""Bodies and answers of `/auth/tokens`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from docker_manager.auth import Scope
from docker_manager.schemas.common import ResponseModel, StrictModel

AppPattern = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\*?$")]


class CreateTokenRequest(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,100}$")
    scopes: list[Scope] = Field(min_length=1)
    expires_in_days: int | None = Field(None, ge=1, le=3650)
    apps: list[AppPattern] | None = Field(
        None,
        min_length=1,
        max_length=50,
        description="Limit the token to these apps (ids, or a prefix ending with one `*`): it reaches "
        "their deploys, releases, containers and tasks only, and no host-level route.",
    )


class TokenView(ResponseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    apps: list[str] | None = None


class CreatedToken(TokenView):
    token: str = Field(description="The secret. Shown this once; only its hash is stored.")


class WhoAmI(BaseModel):
    token_id: str
    name: str
    scopes: list[str]
    apps: list[str] | None = Field(None, description="The apps the token is limited to (null: none).")
