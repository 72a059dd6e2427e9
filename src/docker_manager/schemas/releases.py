"""Answers of the apps and releases routes, and the rollback body."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from docker_manager.schemas.sites import HealthGate

ReleaseStatus = Literal["live", "retained", "gone"]


class ReleaseView(BaseModel):
    app_id: str
    release: int = Field(description="Numbered per app, from 1.")
    created_at: datetime
    source: str = Field(description="deploy, localrun, run, pipeline, update_port, rollback or imported.")
    status: ReleaseStatus = Field(
        description="live: its container serves the app; retained: it can be rolled back to; "
        "gone: its image (or its record) was removed."
    )
    task_id: str | None
    origin_task_id: str | None = Field(None, description="The build whose folder holds the artefact.")
    image_id: str
    tag: str | None
    container_id: str | None
    container_name: str | None
    container_state: str | None = Field(
        None, description="The engine's state word; None: the container is gone."
    )
    host_port: int | None
    restored_from: int | None = Field(None, description="For a rollback: the release it ran again.")
    deployed_by: str | None = Field(None, description="Name of the token that deployed it.")
    deployed_by_token: str | None = Field(None, description="Id of that token.")
    health: dict[str, Any] | None = None
    missing: list[str] = Field(
        default_factory=list,
        description="What this host lacks to run it again (its image, after a restore onto a new host).",
    )


class ReplicaView(BaseModel):
    """One replica of a swarm app (a task meant to run)."""

    slot: int
    node: str = Field(description="The node's hostname.")
    node_id: str
    state: str = Field(description="The task's: pending, starting (health not passed yet), running...")
    health: str = Field(description="healthy (it runs, its check passed), starting, or unhealthy.")
    address: str | None = Field(description="node address:host port, where the site reaches it.")
    error: str | None
    release_task: str | None = Field(description="The task whose spec it runs (deploy or rollback).")


class AppView(BaseModel):
    app_id: str
    mode: Literal["container", "swarm"] = Field("container", description="swarm: replicas on a swarm.")
    live_release: int | None = Field(description="The release serving now (None: nothing runs).")
    container_id: str | None
    container_name: str | None
    state: str | None = Field(description="The live container's state (or the newest release's).")
    host_port: int | None
    domains: list[str] = Field(description="Domains of the sites this service wrote for the app.")
    health: dict[str, Any] | None
    releases: int = Field(description="How many releases are recorded.")
    latest_release: int
    replicas_desired: int | None = Field(None, description="A swarm app's replica count.")
    replicas: list[ReplicaView] | None = Field(None, description="A swarm app's replicas.")


class AppDetail(AppView):
    recent_releases: list[ReleaseView] = Field(description="The newest releases (up to 10).")


class RollbackRequest(HealthGate):
    release: int | None = Field(
        None, ge=1, description="The release to run again; default: the newest one before the live one."
    )


class RollbackStarted(BaseModel):
    task_id: str
    status: Literal["started"]
    app_id: str
    release: int = Field(description="The release being restored.")
    from_release: int | None = Field(description="The live release it replaces.")


class ScaleRequest(BaseModel):
    model_config = {"extra": "forbid"}

    replicas: int = Field(ge=0, le=64, description="How many replicas the swarm app runs.")


class ScaleStarted(BaseModel):
    task_id: str
    status: Literal["started"]
    app_id: str
    replicas: int
    from_replicas: int
