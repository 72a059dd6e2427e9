"""Who is calling and what they may do: a token's principal and its scopes (the tokens themselves
are a domain of their own: services/tokens/).

Scopes: `read` (lists, status, task logs, system usage), `operate` (build, run, stop, rm, nginx),
`exec` (exec and files inside containers, container logs) and `admin` (host commands, host-level
container options, token management, containers this service did not create). `admin` satisfies
every scope; the others only themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from docker_manager.errors import InvalidInput


class Scope(StrEnum):
    READ = "read"
    OPERATE = "operate"
    EXEC = "exec"
    ADMIN = "admin"
    # Only /metrics: a scraper's token can do nothing else.
    METRICS = "metrics"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's id, name and scopes."""

    token_id: str
    name: str
    scopes: frozenset[Scope]

    def has(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes


def parse_scopes(values: list[str]) -> frozenset[Scope]:
    try:
        scopes = frozenset(Scope(v.strip()) for v in values if v.strip())
    except ValueError as exc:
        raise InvalidInput(f"unknown scope; choose from {', '.join(s.value for s in Scope)}") from exc
    if not scopes:
        raise InvalidInput("at least one scope is required")
    return scopes
