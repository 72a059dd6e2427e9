"""`docker-manager deploy`: build on the server, run, and switch the domain, as one command.

With a context PATH: `/docker/build/start` (followed live), then `/docker/localrun` of the build's
artefact. With `--image`: `/docker/run`. With `--domain`: `/nginx/sign-domain` to the new
container, health-gated; the app's previous container is stopped after the drain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from docker_manager.client.api import Api, ClientError


@dataclass
class DeployOptions:
    app_id: str
    path: str | None = None
    image: str | None = None
    tag: str | None = None
    port: int | None = None
    container_port: int = 80
    domain: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    memory: str | None = None
    cpu: float | None = None
    health_path: str = "/"


Follow = Callable[[str, str], dict[str, Any]]  # (title, task_id) -> the final status document


def deploy_app(api: Api, options: DeployOptions, follow: Follow, *, quiet: bool) -> dict[str, Any]:
    started = time.monotonic()
    previous = _live_container(api, options.app_id)
    ports = {f"{options.container_port}/tcp": options.port}
    limits = {k: v for k, v in {"memory": options.memory, "cpu": options.cpu}.items() if v is not None}
    if options.image is not None:
        ran = api.post(
            "/docker/run",
            {"image": options.image, "app_id": options.app_id, "ports": ports, "env": options.env, **limits},
        )
        container = {"id": ran["id"], "name": ran["name"]}
        release = None
    else:
        built = _build(api, options, follow)
        ran = api.post(
            "/docker/localrun",
            {
                "lz4_path": built["result"]["compressed_image_path"],
                "task_id": built["task_id"],
                "app_id": options.app_id,
                "ports": ports,
                "env": options.env,
                **limits,
            },
        )
        container = {"id": ran["container_id"], "name": ran["container_name"]}
        release = ran.get("release")
    host_port = next((p for p in (ran.get("ports") or {}).values() if p), ran.get("host_port"))
    signed = None
    if options.domain:
        body: dict[str, Any] = {
            "domain": options.domain,
            "app_id": options.app_id,
            "new_container": container["id"],
            "health_path": options.health_path,
        }
        if previous and previous != container["id"]:
            body["old_container"] = previous
        signed = api.post("/nginx/sign-domain", body)
    if release is None:
        found = api.get(f"/apps/{options.app_id}/releases", limit=1)
        release = found[0]["release"] if found else None
    return {
        "status": "ok",
        "app_id": options.app_id,
        "release": release,
        "container_id": container["id"],
        "container_name": container["name"],
        "host_port": host_port,
        "domain": options.domain,
        "upstream": signed.get("upstream") if signed else None,
        "seconds": round(time.monotonic() - started, 2),
    }


def _build(api: Api, options: DeployOptions, follow: Follow) -> dict[str, Any]:
    body: dict[str, Any] = {"context_path": options.path, "app_id": options.app_id}
    if options.tag:
        body["tag"] = options.tag
    started = api.post("/docker/build/start", body)
    final = follow(f"build {options.app_id}", started["task_id"])
    if final["status"] != "completed":
        raise ClientError(f"the build {final['status']}: {final.get('error') or 'see its logs'}")
    if not (final.get("result") or {}).get("compressed_image_path"):
        raise ClientError("the build left no artefact to run")
    return final


def _live_container(api: Api, app_id: str) -> str | None:
    """The app's running container before this deploy (to retire after the switch), if any."""
    try:
        app = api.get(f"/apps/{app_id}")
    except ClientError:
        return None
    return str(app["container_id"]) if app.get("state") == "running" and app.get("container_id") else None
