"""Settings: environment variables prefixed `DM_`, then `config.json`, then defaults.

`config.json` is the original service's file. It is looked up at `$DM_CONFIG`, else in the working
directory; its keys are the setting names below without the prefix (the original's
`log_stream_endpoint` and `auth_header` keep their meaning). Environment variables win.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_DATA_DIR = Path("/var/lib/docker-manager")


def config_file_path() -> Path:
    """Where `config.json` is read from: `$DM_CONFIG`, else `./config.json`."""
    return Path(os.environ.get("DM_CONFIG", "config.json"))


class Settings(BaseSettings):
    """Every knob of the service; docs/configuration.md is written from these fields."""

    model_config = SettingsConfigDict(env_prefix="DM_", extra="ignore", frozen=True)

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

    # --- tasks ----------------------------------------------------------------------------
    max_concurrent_builds: int = Field(
        2, ge=1, le=64, description="Builds that run at once; the rest wait as `queued` with their position."
    )
    max_concurrent_localruns: int = Field(
        2, ge=1, le=64, description="Image loads (localrun) that run at once."
    )
    max_concurrent_rollbacks: int = Field(
        2, ge=1, le=64, description="Rollbacks that run at once (one per app at a time in any case)"
    )
    max_concurrent_pipelines: int = Field(1, ge=1, le=64, description="Html-site pipelines that run at once.")
    max_concurrent_commands: int = Field(
        4, ge=1, le=256, description="Host commands (run-stream) that run at once."
    )
    max_queued_tasks: int = Field(
        50,
        ge=1,
        description=("Tasks that may wait (of every kind); beyond that 429 `queue_full` with `Retry-After`."),
    )

    # --- shipping images between hosts ----------------------------------------------------
    sftp_host: str | None = Field(
        None, description="SFTP server that build/start uploads to; unset = no upload stage."
    )
    sftp_port: int = Field(22, ge=1, le=65535, description="SFTP port.")
    sftp_username: str | None = Field(None, description="SFTP user.")
    sftp_key_file: Path | None = Field(None, description="Private key for SFTP (an SSH agent is never used)")
    sftp_known_hosts: Path | None = Field(
        None,
        description=(
            "Known_hosts file the server's host key is verified against. Default `~/.ssh/known_hosts`."
        ),
    )
    sftp_accept_unknown_hosts: bool = Field(
        False, description="Skip host-key verification (tests and first contact only)"
    )
    sftp_remote_dir: str = Field(
        "/upload", description="Remote folder; each task goes to {remote_dir}/{task_id}/."
    )
    sftp_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description=("Upload attempts (transient failures only; wrong keys or credentials fail at once)"),
    )
    sftp_deadline: float = Field(
        1800.0, gt=0, description="Seconds an upload may take in all, key exchange and retries included."
    )
    sftp_client: Literal["auto", "openssh", "asyncssh"] = Field(
        "auto",
        description=(
            "Who copies an upload's bytes: `openssh` (OpenSSH's `sftp`, for key logins, "
            "pinned to the host key the session verified; `auto` uses it when installed) or "
            "`asyncssh`. Authentication, space checks, directories and the atomic rename "
            "are asyncssh's either way; password logins always stay on asyncssh."
        ),
    )
    max_image_bytes: int = Field(
        64 << 30, ge=1 << 20, description="Largest decompressed archive `/docker/localrun` loads (lz4 bombs)"
    )
    healthcheck_time: int = Field(
        15, ge=1, le=3600, description="Default seconds between a localrun and its health check."
    )

    # --- nginx ----------------------------------------------------------------------------
    nginx_binary: str = Field("nginx", description="The nginx binary.")
    nginx_conf: Path | None = Field(None, description="nginx's main config file (-c); default: nginx's own.")
    nginx_prefix: Path | None = Field(None, description="nginx's prefix (-p); default: nginx's own.")
    nginx_pid_file: Path = Field(
        Path("/run/nginx.pid"),
        description="Pid file of the nginx master (to check it runs and see its workers)",
    )
    nginx_error_log: Path = Field(
        Path("/var/log/nginx/error.log"),
        description="Read after a reload for nginx's reason when it did not apply.",
    )
    nginx_conf_dirs: list[Path] = Field(
        default_factory=lambda: [Path("/etc/nginx/conf.d")],
        description=("Directories site files may be written to; a request's `conf_dir` must be one of them."),
    )
    nginx_listen: str = Field(
        "80",
        pattern=r"^(\d{1,5}|[0-9.]{7,15}:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5})$",
        description="What generated sites listen on (`port` or `address:port`)",
    )
    nginx_tls_listen: str = Field(
        "443",
        pattern=r"^(\d{1,5}|[0-9.]{7,15}:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5})$",
        description="The TLS listen, used when a certificate exists for the domain.",
    )
    nginx_cert_dir: Path | None = Field(
        None,
        description=(
            "Holds `{domain}.crt` and `{domain}.key`; a site whose files exist serves TLS "
            "and redirects port 80."
        ),
    )
    switch_drain_seconds: float = Field(
        2.0, ge=0, description="Wait after a switch before the old container is stopped."
    )
    switch_mode: Literal["auto", "nat", "reload"] = Field(
        "auto",
        description=(
            "How a switch moves a site's traffic: `nat` (a kernel DNAT rule per site, no "
            "nginx reload; needs root and iptables), `reload` (rewrite the site and reload "
            "nginx), `auto` (nat when possible)"
        ),
    )
    switch_front_network: ipaddress.IPv4Network = Field(
        ipaddress.IPv4Network("127.77.0.0/16"),
        description=(
            "Loopback addresses nginx sends each site to in nat mode (inside 127.0.0.0/8, "
            "not overlapping 127.0.0.0/24)"
        ),
    )
    switch_stop_timeout: int = Field(
        10, ge=0, le=600, description="Seconds the old container gets to stop before SIGKILL."
    )

    # --- host commands and the html-site pipeline ------------------------------------------
    run_allow_shell: bool = Field(
        True,
        description=(
            "Run a string `cmd` through `/bin/sh -c`, as the original did (`false`: split it into argv)"
        ),
    )
    run_timeout: float = Field(3600.0, gt=0, description="Longest a run-stream command may run, in seconds.")
    run_max_line_bytes: int = Field(64 << 10, ge=256, description="Longer output lines are cut into pieces.")
    run_max_output_bytes: int = Field(
        64 << 20, ge=1024, description="Output kept per command; past it the pipes are still drained."
    )
    git_allowed_schemes: list[str] = Field(
        default_factory=lambda: ["https"], description="URL schemes the pipeline may clone from."
    )
    git_local_roots: list[Path] = Field(
        default_factory=list,
        description="Directories local repositories (paths or `file://`) may be cloned from.",
    )
    git_timeout: float = Field(300.0, gt=0, description="Longest a clone may take, in seconds.")
    git_max_bytes: int = Field(512 << 20, ge=1 << 20, description="Largest cloned working tree.")
    registry_credentials_for: list[str] = Field(
        default_factory=lambda: ["docker.io"],
        description=(
            "Registries or repository prefixes (`127.0.0.1:5000/team`) those credentials may be sent to."
        ),
    )
    pipeline_base_image: str = Field(
        "nginx:alpine", description="Base image when the repository has no Dockerfile."
    )
    pipeline_html_dir: str = Field(
        "/usr/share/nginx/html", description="Where the site is copied in that image."
    )
    pipeline_probe_timeout: float = Field(
        30.0, gt=0, description="How long the probe waits for the site to answer."
    )

    # --- releases, retention, disk ---------------------------------------------------------
    keep_releases: int = Field(
        3,
        ge=1,
        le=1000,
        description=(
            "Releases per app whose containers, images and artefacts are kept (the live one always is)"
        ),
    )
    task_retention_days: float = Field(
        30.0,
        gt=0,
        description=(
            "Final tasks older than this lose their rows, events, outbox rows and folders "
            "(unless a kept release refers to them)"
        ),
    )
    gc_interval: float = Field(
        86400.0,
        ge=60,
        description="Seconds between background clean-ups (releases, tasks, dangling build images)",
    )
    min_free_bytes: int | None = Field(
        None,
        ge=0,
        description=(
            "Free space a build, export, localrun, upload or clone must leave, else it is "
            "refused before it starts (507 `insufficient_storage`). Default 2 GiB or 5 % of "
            "the filesystem, the smaller."
        ),
    )
    secret_key_file: Path | None = Field(
        None,
        description=(
            "Key that seals release env values at rest (made 0600 on first start). Default "
            "`{data_dir}/release-key`."
        ),
    )

    # --- host metrics --------------------------------------------------------------------
    top_sample_interval: float = Field(
        2.0, gt=0.1, description="Seconds between process samples for `/system/top`."
    )

    # --- external log stream (the original's config.json keys) ---------------------------
    log_stream_endpoint: str | None = Field(None, description="URL task events and log lines are posted to.")
    auth_header: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers sent to `log_stream_endpoint`."
    )
    log_stream_batch: bool = Field(
        False,
        description=('`false`: one payload per POST, as the original; `true`: batches `{"events": [...]}`.'),
    )
    log_stream_timeout: float = Field(5.0, gt=0, description="Seconds per delivery attempt.")
    log_stream_max_attempts: int = Field(8, ge=1, description="Attempts before a batch is set aside as dead.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        json_source = JsonConfigSettingsSource(settings_cls, json_file=config_file_path())
        return (init_settings, env_settings, json_source, file_secret_settings)

    @field_validator("auth_header", mode="before")
    @classmethod
    def _headers_object_only(cls, value: Any) -> Any:
        # The original ignored a non-object auth_header; do the same rather than refuse to start.
        return value if isinstance(value, dict) else {}

    @field_validator("switch_front_network")
    @classmethod
    def _loopback_fronts(cls, value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        # Only loopback: a front elsewhere would send someone else's traffic into a site.
        if not value.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")) or value.prefixlen > 30:
            raise ValueError("switch_front_network must be a network inside 127.0.0.0/8 (/30 or larger)")
        if value.overlaps(ipaddress.IPv4Network("127.0.0.0/24")):
            raise ValueError("switch_front_network must not hold 127.0.0.1 (services listen there)")
        return value

    @field_validator("publish_host_ip")
    @classmethod
    def _sites_reach_published_ports(cls, value: str) -> str:
        # Sites reach a container's published port on 127.0.0.1: published on another address
        # only, that port on loopback would be free for any local user to bind and serve the site.
        address = ipaddress.ip_address(value)
        if not (address.is_loopback or address.is_unspecified):
            raise ValueError(
                "publish_host_ip must be a loopback address or 0.0.0.0 (sites reach published ports on "
                "127.0.0.1)"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # an address or a network, nothing else
        return value

    @field_validator("log_stream_endpoint")
    @classmethod
    def _http_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/?#]+[^\s]*\Z", value):
            raise ValueError("log_stream_endpoint must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _check_listener(self) -> Settings:
        if not self.allow_remote and not _is_loopback(self.host):
            raise ValueError(
                f"refusing to listen on {self.host!r}: set DM_ALLOW_REMOTE=true (behind TLS) to allow it"
            )
        return self

    # --- derived paths -------------------------------------------------------------------
    @cached_property
    def builds_path(self) -> Path:
        return (self.builds_dir or self.data_dir / "builds").resolve()

    @cached_property
    def upload_path(self) -> Path:
        return (self.upload_root or self.data_dir / "upload").resolve()

    @cached_property
    def context_paths(self) -> list[Path]:
        roots = self.context_roots or [self.data_dir / "contexts"]
        return [root.resolve() for root in roots]

    @cached_property
    def work_paths(self) -> list[Path]:
        roots = self.work_roots or [self.data_dir / "work"]
        return [root.resolve() for root in roots]

    @cached_property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'docker-manager.db'}"

    @cached_property
    def admin_token_file(self) -> Path:
        return self.data_dir.resolve() / "admin-token"

    @cached_property
    def secret_key_path(self) -> Path:
        return (self.secret_key_file or self.data_dir / "release-key").resolve()

    @cached_property
    def forbidden_host_ports(self) -> frozenset[int]:
        return frozenset([*self.reserved_host_ports, self.port])

    def ensure_dirs(self) -> None:
        """Create the directories the service owns (0700: they hold logs and secrets)."""
        for path in (
            self.data_dir,
            self.builds_path,
            self.upload_path,
            *self.context_paths,
            *self.work_paths,
        ):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)


@dataclass(frozen=True, slots=True)
class Roots:
    """Where the service keeps things: the folders every domain that reads or writes task folders,
    artefacts or build contexts is given (`Settings` resolves them once)."""

    data_dir: Path
    builds_path: Path
    upload_path: Path
    context_paths: tuple[Path, ...]
    work_paths: tuple[Path, ...]

    @classmethod
    def of(cls, settings: Settings) -> Roots:
        return cls(
            data_dir=settings.data_dir,
            builds_path=settings.builds_path,
            upload_path=settings.upload_path,
            context_paths=tuple(settings.context_paths),
            work_paths=tuple(settings.work_paths),
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
