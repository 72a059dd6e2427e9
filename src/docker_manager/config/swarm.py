"""Settings of apps on a Docker Swarm: the registry every node pulls from, and the rollouts."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class SwarmFields(BaseModel):
    # --- apps on a swarm ---------------------------------------------------------------------
    swarm_registry: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*){0,4}$",
        description=(
            "Registry and repository prefix every node of the swarm reaches (e.g. "
            "`10.0.0.5:5000/apps`): a swarm app's image is pushed there as `<prefix>/<app>` and its "
            "replicas run it by digest. Without it, a swarm app runs only an image every node "
            "already has."
        ),
    )
    swarm_registry_username: str | None = Field(None, max_length=255, description="Its user.")
    swarm_registry_password: SecretStr | None = Field(
        None, description="Its password, forwarded to the nodes with each create and update."
    )
    swarm_rollout_timeout: float = Field(
        300.0,
        ge=10,
        le=3600,
        description=(
            "Longest a swarm rollout (or scale) may take to converge; past it the service is rolled "
            "back and the task ends in error with the engine's reasons."
        ),
    )
    swarm_poll_interval: float = Field(
        1.0,
        ge=0.2,
        le=30,
        description="Seconds between looks at where a swarm app's replicas run (its sites follow).",
    )
