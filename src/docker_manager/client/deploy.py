"""`docker-manager deploy`: one call to the server's deploy operation, followed to its end.

`POST /apps/{app}/deploy` with one source (a context PATH as the server sees it, `--git`,
`--image` or `--artefact`); the server builds or loads the image, runs it, checks it, switches the
app's sites (and `--domain`) to it with no failed request, records the release and retires the
previous container. The terminal follows the task live; Ctrl-C can detach from it (the deploy goes
on) or cancel it (the previous release stays live).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from docker_manager.client.errors import ClientError

if TYPE_CHECKING:
    from docker_manager.client.api import Api


@dataclass
class DeployOptions:
    app_id: str
    path: str | None = None
    image: str | None = None
    registry_login: dict[str, str] | None = field(default=None, repr=False)  # (holds a password)
    git: str | None = None
    ref: str | None = None
    artefact: str | None = None
    tag: str | None = None
    port: int | None = None
    container_port: int = 80
    domain: str | None = None
    tls: str | None = None
    hsts_max_age: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    memory: str | None = None
    cpu: float | None = None
    health_path: str = "/"
    export: bool = False
    restart: str | None = None  # docker's form: "unless-stopped", "on-failure:5"
    replicas: int | None = None  # given (or a placement): the app runs as replicas on the swarm
    placement: list[str] | None = None

    def body(self) -> dict[str, Any]:
        sources = {
            "context": self.path,
            "image": self.image,
            "artefact": self.artefact,
            "git": {"url": self.git, **({"ref": self.ref} if self.ref else {})} if self.git else None,
        }
        optional = {
            "tag": self.tag,
            "port": self.port,
            "domain": self.domain,
            "tls": self.tls,
            "hsts_max_age": self.hsts_max_age,
            "memory": self.memory,
            "cpus": self.cpu,
            "registry_auth": self.registry_login,
        }
        return {
            **{k: v for k, v in sources.items() if v is not None},
            **{k: v for k, v in optional.items() if v is not None},
            "container_port": self.container_port,
            "env": self.env,
            "health": {"path": self.health_path},
            "export": self.export,
            **self._restart(),
            **self._swarm(),
        }

    def _restart(self) -> dict[str, Any]:
        if self.restart is None:
            return {}
        name, _, retries = self.restart.partition(":")
        policy: dict[str, Any] = {"name": name}
        if retries:
            policy["maximum_retry_count"] = int(retries) if retries.isdigit() else retries
        return {"restart_policy": policy}

    def _swarm(self) -> dict[str, Any]:
        if self.replicas is None and not self.placement:
            return {}
        chosen = {"replicas": self.replicas, "placement": self.placement}
        return {"mode": "swarm", **{k: v for k, v in chosen.items() if v is not None}}


Follow = Callable[[str, str], dict[str, Any]]  # (title, task_id) -> the final status document


def deploy_app(api: Api, options: DeployOptions, follow: Follow, *, quiet: bool) -> dict[str, Any]:
    started = api.post(f"/apps/{quote(options.app_id, safe='')}/deploy", options.body())
    final = follow(f"deploy {options.app_id}", started["task_id"])
    if final["status"] != "completed":
        stage = final.get("stage") or "deploy"
        raise ClientError(
            f"the deploy {final['status']} at {stage}: {final.get('error') or 'see its logs'} "
            f"(task {started['task_id']}; the previous release, if any, is still live)"
        )
    result: dict[str, Any] = final.get("result") or {}
    return {"task_id": started["task_id"], **result}
