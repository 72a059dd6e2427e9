"""Settings of the service itself: where it keeps things, how it listens, the engine it drives."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

DEFAULT_DATA_DIR = Path("/var/lib/docker-manager")


class PlatformFields(BaseModel):
    # --- where things live ---------------------------------------------------------------
    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="State: SQLite database, admin token file, task folders."
    )
    builds_dir: Path | None = Field(None, description="Per-task build folders. Default `{data_dir}/builds`.")
    upload_root: Path | None = Field(
        None, description="Where uploaded artefacts land on a runtime host. Default `{data_dir}/upload`."
    )
    work_roots: list[Path] = Field(
        default_factory=list,
        description=("Directories /tasks/run-stream may run commands in. Default `[{data_dir}/work]`."),
    )
    context_roots: list[Path] = Field(
        default_factory=list,
        description=(
            "Directories build contexts may come from; relative paths start at the first. "
            "Default `[{data_dir}/contexts]`."
        ),
    )
    database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL (`postgresql+asyncpg://…` for PostgreSQL). Default SQLite in `data_dir`."
        ),
    )
    db_busy_timeout: float = Field(
        5.0,
        gt=0,
        le=120,
        description=(
            "Seconds a write waits for a SQLite database another process holds (then 503 `database_busy`)"
        ),
    )

    # --- HTTP listener and access --------------------------------------------------------
    host: str = Field("127.0.0.1", description="Listen address.")
    port: int = Field(8002, ge=1, le=65535, description="Listen port.")
    allow_remote: bool = Field(False, description="Allow a non-loopback listen address (put TLS in front)")
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1", "[::1]"],
        description='Accepted `Host` headers (DNS-rebinding guard); `["*"]` disables the check.',
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="CORS origins; empty means no CORS headers at all."
    )
    admin_token: SecretStr | None = Field(
        None, description="Bootstrap admin token; unset means one is generated on first start."
    )
    public_docs: bool = Field(True, description="Serve `/docs` and `/openapi.json` without a token.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest accepted request body (bytes).")
    auth_failure_limit: int = Field(
        20, ge=1, description="Failed authentications per client address within the window before 429."
    )
    auth_failure_window: float = Field(
        60.0, gt=0, description="That window, and how long the address then waits, in seconds."
    )
    access_log: bool = Field(
        False,
        description=("Log every request line (uvicorn's access log; costs ~40 % of status-route throughput)"),
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "Addresses or networks of proxies whose `X-Forwarded-For` is believed; empty: "
            "the peer address is the client (the limiter and the audit use it)"
        ),
    )
    max_connections: int = Field(
        1024,
        ge=16,
        le=1_000_000,
        description=(
            "Client connections open at once (fewer when the open-files limit is low); past "
            "it the connection waiting longest for its own request is closed."
        ),
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description=(
            "Seconds a connection has to send a complete request head (from its start, or "
            "from the previous answer)"
        ),
    )
    body_timeout: float = Field(
        60.0, gt=0, le=3600, description="Seconds a request has to send its whole body."
    )
    send_timeout: float = Field(
        60.0,
        gt=0,
        le=3600,
        description=(
            "Seconds an answer may wait for its client to read any of it (then the "
            "connection is closed), as nginx's `send_timeout`."
        ),
    )
    max_streams: int = Field(
        256,
        ge=1,
        description=(
            "Readers' streams open at once (task events, `/tasks/logs`, the dashboard's "
            "live log); past it 429 `too_many_streams`."
        ),
    )
    max_streams_per_token: int = Field(32, ge=1, description="Live streams at once per token.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description=(
            "`json`: one object per line (`ts`, `level`, `logger`, `event`, `request_id`, "
            "`task_id`, `exception`)"
        ),
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description=(
            "Also serve `/metrics` without a token on `127.0.0.1:PORT` (for a scraper on this host)"
        ),
    )
    audit_file: Path | None = Field(
        None,
        description=(
            "Also append every audit entry to this file as a JSON line (reopened on SIGHUP, for logrotate)"
        ),
    )
    ui_session_hours: float = Field(
        12.0,
        gt=0,
        le=720,
        description=(
            "How long a dashboard login lasts (a session also ends on logout and when its token is revoked)"
        ),
    )
    audit_retention_days: float = Field(
        365.0, gt=0, description="Audit entries older than this are removed by the clean-up."
    )

    # --- Docker engine -------------------------------------------------------------------
    docker_host: str = Field(
        "unix:///var/run/docker.sock", description="Engine address (`unix://` or `tcp://`)"
    )
    docker_timeout: float = Field(
        30.0, gt=0, description="Seconds for short engine calls (streams have no read timeout)"
    )
    allow_privileged_options: bool = Field(
        False, description="Let admin tokens use host-level container options (privileged, binds...)."
    )
    publish_host_ip: str = Field(
        "127.0.0.1",
        description=(
            "Host address published container ports bind to: a loopback address or "
            "`0.0.0.0` (sites reach published ports on 127.0.0.1; published elsewhere only, "
            "that port would be free on loopback for any local user)"
        ),
    )
    reserved_host_ports: list[int] = Field(
        default_factory=lambda: [22, 2375, 2376],
        description="Host ports containers may never publish (the API's own port is always added).",
    )
    exec_timeout: float = Field(
        60.0, gt=0, description="Longest `/docker/exec` (and `detach: false` run) in seconds."
    )
    exec_max_output_bytes: int = Field(
        1 << 20, ge=1024, description="Cap on captured exec/log output per stream."
    )
    fs_max_bytes: int = Field(
        10 << 20,
        ge=1024,
        description="Largest file read (as JSON) or written inside a container; bigger is 413.",
    )
    fs_helper_binary: Path = Field(
        Path("/bin/busybox"),
        description=(
            "A static busybox (Debian `busybox-static`), copied into a container without "
            "`rm` to delete files there."
        ),
    )
    max_context_bytes: int = Field(
        4 << 30, ge=1 << 20, description="Largest build context sent to the engine."
    )
    build_timeout: float = Field(
        3600.0, gt=0, description="Longest a build may run (all build routes and the pipeline), in seconds."
    )
    build_labels: bool = Field(
        False,
        description=(
            "Also label built images `docker-manager.managed/app_id/task_id` (for `docker "
            "images --filter`); costs one more build step (~0.2 s with the classic builder) "
            "and makes every rebuild a new image. Ownership never depends on labels (it is "
            "recorded in the database)"
        ),
    )
