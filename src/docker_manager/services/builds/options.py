"""What the builds domain is configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from docker_manager.config import Settings


@dataclass(frozen=True, slots=True)
class SftpOptions:
    """Where build/start uploads go unless the request says otherwise (`DM_SFTP_*`)."""

    host: str | None
    port: int
    username: str | None
    key_file: Path | None
    known_hosts: Path | None
    accept_unknown_hosts: bool
    remote_dir: str
    attempts: int
    deadline: float
    client: Literal["auto", "openssh", "asyncssh"]

    @classmethod
    def of(cls, settings: Settings) -> SftpOptions:
        return cls(
            host=settings.sftp_host,
            port=settings.sftp_port,
            username=settings.sftp_username,
            key_file=settings.sftp_key_file,
            known_hosts=settings.sftp_known_hosts,
            accept_unknown_hosts=settings.sftp_accept_unknown_hosts,
            remote_dir=settings.sftp_remote_dir,
            attempts=settings.sftp_attempts,
            deadline=settings.sftp_deadline,
            client=settings.sftp_client,
        )


@dataclass(frozen=True, slots=True)
class BuildOptions:
    builds_path: Path  # the task folders
    context_paths: tuple[Path, ...]  # where build contexts may come from
    max_context_bytes: int
    build_timeout: float
    build_labels: bool  # also label built images (one more step)
    sftp: SftpOptions

    @classmethod
    def of(cls, settings: Settings) -> BuildOptions:
        return cls(
            builds_path=settings.builds_path,
            context_paths=tuple(settings.context_paths),
            max_context_bytes=settings.max_context_bytes,
            build_timeout=settings.build_timeout,
            build_labels=settings.build_labels,
            sftp=SftpOptions.of(settings),
        )
