"""Settings of the work: tasks, shipping, nginx, host commands and the pipeline, releases, the log stream."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class WorkFields(BaseModel):
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
    max_concurrent_deploys: int = Field(
        2,
        ge=1,
        le=64,
        description="Deploys (`POST /apps/{app_id}/deploy`) that run at once, of different apps.",
    )
    deploy_queue: Literal["wait", "refuse"] = Field(
        "wait",
        description="A deploy of an app that has one queued or running: waits its turn (`wait`), or is "
        "refused with 409 `deploy_in_progress` (`refuse`).",
    )
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
