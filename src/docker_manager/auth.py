"""Who is calling and what they may do: a token's principal and its scopes (the tokens themselves
are a domain of their own: services/tokens/).

Scopes: `read` (lists, status, task logs, system usage), `operate` (build, run, stop, rm, nginx),
`exec` (exec and files inside containers, container logs) and `admin` (host commands, host-level
container options, token management, containers this service did not create). `admin` satisfies
every scope; the others only themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from docker_manager.errors import AppNotAllowed, InvalidInput


class Scope(StrEnum):
    READ = "read"
    OPERATE = "operate"
    EXEC = "exec"
    ADMIN = "admin"
    # Only /metrics: a scraper's token can do nothing else.
    METRICS = "metrics"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's id, name and scopes, and the apps it is limited to (None: not
    limited). A limited token (a CI job's) reaches only routes that name one of its apps, and only
    objects of those apps: every host-level route and every object of no app refuses it."""

    token_id: str
    name: str
    scopes: frozenset[Scope]
    apps: tuple[str, ...] | None = None

    def has(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes and self.apps is None

    def allows_app(self, app_id: str | None) -> bool:
        """Whether this token may act on `app_id` (an exact name, or `prefix*`)."""
        if self.apps is None:
            return True
        if not app_id:
            return False
        return any(app_id == p or (p.endswith("*") and app_id.startswith(p[:-1])) for p in self.apps)

    def require_app(self, app_id: str | None, what: str = "this") -> None:
        if not self.allows_app(app_id):
            limited = ", ".join(self.apps or ())
            # (never which app it is: the name of another team's app is not this token's to learn)
            raise AppNotAllowed(f"this token is limited to the apps {limited}: {what} is not of one of them")


# An app a token may be limited to: an app id, or a prefix of them ending with one `*`.
APP_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\*?\Z")


def parse_apps(values: list[str] | None) -> tuple[str, ...] | None:
    """The apps a new token is limited to (None: all), each an app id or `prefix*`."""
    if not values:
        return None
    apps = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    bad = [a for a in apps if not APP_PATTERN.fullmatch(a) or a == "*"]
    if bad or not apps:
        raise InvalidInput(f"not an app id or prefix*: {', '.join(bad) or 'none given'}", field="apps")
    return apps


def parse_scopes(values: list[str]) -> frozenset[Scope]:
    try:
        scopes = frozenset(Scope(v.strip()) for v in values if v.strip())
    except ValueError as exc:
        raise InvalidInput(f"unknown scope; choose from {', '.join(s.value for s in Scope)}") from exc
    if not scopes:
        raise InvalidInput("at least one scope is required")
    return scopes
