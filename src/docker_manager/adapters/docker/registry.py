"""Registry credentials in the engine's form: the `X-Registry-Auth` header of a pull or push, or
of a service whose workers pull. The engine uses it for that one call and keeps nothing."""

from __future__ import annotations

import base64
import json

DOCKER_HUB = "https://index.docker.io/v1/"


def registry_of(repository: str) -> str:
    """The registry host of a repository name (the engine's rule: a first part with a dot, a port
    or `localhost` is a registry), or Docker Hub."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def auth_header(username: str, password: str, server: str) -> str:
    """X-Registry-Auth for these credentials (base64url of the engine's AuthConfig)."""
    config = {"username": username, "password": password, "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(config).encode()).decode()
