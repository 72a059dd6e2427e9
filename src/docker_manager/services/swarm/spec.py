"""A swarm app as the engine's service spec, and back: pure functions, no engine calls.

The spec a deploy writes is the whole truth of a release (image by digest, env, limits, placement,
health, update and rollback policies); a release keeps it (env sealed apart) to run it again.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
import shlex
from dataclasses import dataclass
from typing import Any

from docker_manager.labels import TASK_ID, managed_labels

SECOND = 1_000_000_000  # the engine counts durations in nanoseconds
MAX_REPLICAS = 64
_REPO_RE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class SwarmPlan:
    """What a swarm deploy asks for, beside its image."""

    app_id: str
    task_id: str
    image: str  # by digest when pushed
    container_port: int
    replicas: int
    env: dict[str, str]
    placement: tuple[str, ...] = ()
    memory: int | None = None
    nano_cpus: int | None = None
    health_path: str = "/"
    health_interval: float = 1.0
    health_timeout: float = 30.0
    start_period: float = 0.0


def service_name(app_id: str) -> str:
    """The app's service: `dm-<app>` (a long id cut and made unique with a hash; at most 63)."""
    name = f"dm-{app_id}"
    if len(name) <= 63:
        return name
    return f"dm-{app_id[:46]}-{hashlib.sha256(app_id.encode()).hexdigest()[:12]}"


def repository_name(app_id: str) -> str:
    """The app's repository under the registry prefix: lower case, as registries want; an id that
    had to change gets a hash of itself (so `Web` and `web` stay apart)."""
    cleaned = _REPO_RE.sub("-", app_id.lower()).strip("-") or "app"
    if cleaned == app_id:
        return cleaned
    return f"{cleaned[:40]}-{hashlib.sha256(app_id.encode()).hexdigest()[:10]}"


def health_check(plan: SwarmPlan) -> dict[str, Any]:
    """The replicas' own health check (Swarm counts a replica as running only once it passes, and
    a rollout fails on one that never does): an HTTP GET from inside, by busybox's or GNU wget, or
    curl. A 2xx or 3xx answer passes."""
    url = shlex.quote(f"http://127.0.0.1:{plan.container_port}{plan.health_path}")
    command = f"wget -q -O /dev/null {url} || curl -fsS -o /dev/null {url}"
    interval = max(1.0, plan.health_interval)
    return {
        "Test": ["CMD-SHELL", command],
        "Interval": round(interval * SECOND),
        "Timeout": round(min(10.0, plan.health_timeout) * SECOND),
        "Retries": max(1, math.ceil(plan.health_timeout / interval)),
        "StartPeriod": round(plan.start_period * SECOND),
    }


def service_spec(plan: SwarmPlan) -> dict[str, Any]:
    """The whole ServiceSpec of a deploy. Start-first rollouts one replica at a time, rolled back
    by the engine on a failure (never `pause`, Swarm's default, which waits for a person); each
    host port chosen by the engine per replica (a fixed one would keep a start-first rollout from
    ever converging), reached without the routing mesh (DNS round robin, no virtual IP)."""
    labels = managed_labels(app_id=plan.app_id)
    resources: dict[str, Any] = {}
    if plan.memory is not None:
        resources["MemoryBytes"] = plan.memory
    if plan.nano_cpus is not None:
        resources["NanoCPUs"] = plan.nano_cpus
    monitor = round(max(2.0, 2 * plan.health_interval) * SECOND)
    policy = {"Parallelism": 1, "Delay": 0, "Monitor": monitor, "MaxFailureRatio": 0, "Order": "start-first"}
    return {
        "Name": service_name(plan.app_id),
        "Labels": labels,
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": plan.image,
                "Env": [f"{key}={value}" for key, value in plan.env.items()],
                "Labels": managed_labels(app_id=plan.app_id, task_id=plan.task_id),
                "Healthcheck": health_check(plan),
                "StopGracePeriod": 10 * SECOND,
            },
            "Resources": {"Limits": resources},
            "RestartPolicy": {"Condition": "any", "Delay": SECOND, "MaxAttempts": 0},
            "Placement": {"Constraints": list(plan.placement)},
            "ForceUpdate": 0,
        },
        "Mode": {"Replicated": {"Replicas": plan.replicas}},
        "UpdateConfig": {**policy, "FailureAction": "rollback"},
        # (a rollback that meets a failing replica goes on to the end rather than pause: the
        # service is then wholly at the previous spec, its replicas restarted by their policy)
        "RollbackConfig": {**policy, "FailureAction": "continue"},
        "EndpointSpec": {
            "Mode": "dnsrr",
            "Ports": [{"Protocol": "tcp", "TargetPort": plan.container_port, "PublishMode": "host"}],
        },
    }


def recorded(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as a release keeps it: without env values (they are sealed apart)."""
    kept = copy.deepcopy(spec)
    kept["TaskTemplate"]["ContainerSpec"].pop("Env", None)
    return {"swarm": kept}


def for_release(config: dict[str, Any], env: list[str], task_id: str) -> dict[str, Any]:
    """A recorded spec made runnable again by task `task_id` (a rollback), with its env back."""
    spec = copy.deepcopy(config["swarm"])
    container = spec["TaskTemplate"]["ContainerSpec"]
    container["Env"] = env
    container.setdefault("Labels", {})[TASK_ID] = task_id
    return dict(spec)


def is_swarm_config(config: dict[str, Any] | None) -> bool:
    return bool(config) and isinstance(config, dict) and "swarm" in config


def spec_task_id(service: dict[str, Any]) -> str | None:
    """The task that wrote the service's current spec (its release's task)."""
    container = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
    value = (container.get("Labels") or {}).get(TASK_ID)
    return str(value) if value else None


def replicas_of(service: dict[str, Any]) -> int:
    return int((((service.get("Spec") or {}).get("Mode") or {}).get("Replicated") or {}).get("Replicas") or 0)


def container_port_of(service: dict[str, Any]) -> int:
    ports = ((service.get("Spec") or {}).get("EndpointSpec") or {}).get("Ports") or [{}]
    return int(ports[0].get("TargetPort") or 80)
