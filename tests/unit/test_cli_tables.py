"""The terminal client's tables: every value as words a person reads, never a Python repr."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from docker_manager.client.terminal import cell, table


def test_cells() -> None:
    assert cell({"80/tcp": 18080, "53/udp": None}) == "80/tcp→18080, 53/udp"
    assert cell(["a.example.com", "b.example.com"]) == "a.example.com, b.example.com"
    assert cell({"status": "healthy", "code": 200}) == "status=healthy, code=200"
    assert cell(None) == cell([]) == cell({}) == cell("") == "-"
    assert (cell(True), cell(False), cell(3), cell(1.5)) == ("yes", "no", "3", "1.5")


def test_a_table() -> None:
    rows = [{"name": "web", "ports": {"80/tcp": 18080}, "domains": ["x.example.com"], "live": True}]
    text = table(rows, ["name", "ports", "domains", "live"])
    assert text.splitlines() == [
        "NAME  PORTS         DOMAINS        LIVE",
        "web   80/tcp→18080  x.example.com  yes",
    ]


def test_the_deploy_command_sends_a_restart_policy_in_dockers_words() -> None:
    from docker_manager.client.deploy import DeployOptions
    from docker_manager.schemas.deploys import DeployRequest

    def policy(restart: str | None) -> object:
        body = DeployOptions(app_id="shop", path="shop", restart=restart).body()
        return DeployRequest.model_validate(body).restart_policy

    assert policy(None) is None  # (the server's default: unless-stopped)
    assert policy("no").name == "no"  # type: ignore[attr-defined]
    on_failure = policy("on-failure:5")
    assert (on_failure.name, on_failure.maximum_retry_count) == ("on-failure", 5)  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        policy("on-failure:many")
    with pytest.raises(ValidationError):
        policy("sometimes")
    with pytest.raises(ValidationError):  # (a retired release would come back at the engine's restart)
        policy("always")
    with pytest.raises(ValidationError):  # (the engine takes a count with on-failure only)
        policy("unless-stopped:3")


def test_the_deploy_command_sends_registry_credentials_and_never_shows_them() -> None:
    from docker_manager.client.deploy import DeployOptions
    from docker_manager.schemas.deploys import DeployRequest

    login = {"username": "ci", "password": "hunter2-very-secret"}
    options = DeployOptions(app_id="shop", image="registry.example.com/shop:v1", registry_login=login)
    request = DeployRequest.model_validate(options.body())
    assert (
        request.registry_auth is not None
        and request.registry_auth.password.get_secret_value() == login["password"]
    )
    assert "hunter2" not in repr(options) and "hunter2" not in repr(request)
    assert "registry_auth" not in DeployOptions(app_id="shop", image="shop:v1").body()
