"""Tokens: the API's bearer tokens (`/auth/tokens`, `/auth/whoami`)."""

from docker_manager.services.tokens.store import TokenInfo, TokenStore

__all__ = ["TokenInfo", "TokenStore"]
