"""`/auth/whoami` (any token) and `/auth/tokens`: token management (admin). The CLI offers the same on
the host: `docker-manager token ...`."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path

from docker_manager.api.deps import AdminAccess, AnyAccess, TokensDep
from docker_manager.auth import parse_apps
from docker_manager.schemas.tokens import CreatedToken, CreateTokenRequest, TokenView, WhoAmI

router = APIRouter(prefix="/auth", tags=["auth"])


@router.get("/whoami", response_model=WhoAmI)
async def whoami(who: AnyAccess) -> WhoAmI:
    """The calling token: its id, name and scopes (a client checks a token with it)."""
    return WhoAmI(
        token_id=who.token_id,
        name=who.name,
        scopes=sorted(s.value for s in who.scopes),
        apps=list(who.apps) if who.apps is not None else None,
    )


@router.get("/tokens", response_model=list[TokenView])
async def list_tokens(tokens: TokensDep, _: AdminAccess) -> list[TokenView]:
    return [TokenView(**asdict(t)) for t in await tokens.list()]


@router.post("/tokens", response_model=CreatedToken, status_code=201)
async def create_token(body: CreateTokenRequest, tokens: TokensDep, _: AdminAccess) -> CreatedToken:
    expires = datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    info, secret = await tokens.create(
        name=body.name, scopes=frozenset(body.scopes), expires_at=expires, apps=parse_apps(body.apps)
    )
    return CreatedToken(**asdict(info), token=secret)


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(
    token_id: Annotated[str, Path(pattern=r"^[a-f0-9]{16}$")], tokens: TokensDep, _: AdminAccess
) -> None:
    await tokens.revoke(token_id)
