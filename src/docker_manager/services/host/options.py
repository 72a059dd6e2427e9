"""What the host domain is configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from docker_manager.config import Roots, Settings


@dataclass(frozen=True, slots=True)
class HostOptions:
    roots: Roots  # the folders whose free space is reported and required
    min_free_bytes: int | None  # None: 2 GiB or 5 % of the filesystem, the smaller
    sample_interval: float  # seconds between process samples (`/system/top`)

    @classmethod
    def of(cls, settings: Settings) -> HostOptions:
        return cls(
            roots=Roots.of(settings),
            min_free_bytes=settings.min_free_bytes,
            sample_interval=settings.top_sample_interval,
        )


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    data_dir: Path
    roots: tuple[Path, ...]  # every folder the service writes in
    admin_token_file: Path
    listen_ports: tuple[int, ...]  # nginx's ports: its HTTP one, and its TLS one when certificates are on
    site_dirs: tuple[Path, ...]  # where the managed site files are

    @classmethod
    def of(cls, settings: Settings) -> DoctorOptions:
        roots = Roots.of(settings)
        ports = [_port_of(settings.nginx_listen)]
        if settings.nginx_cert_dir is not None:
            ports.append(_port_of(settings.nginx_tls_listen))
        return cls(
            data_dir=roots.data_dir,
            roots=tuple(
                dict.fromkeys(
                    [
                        roots.data_dir,
                        roots.builds_path,
                        roots.upload_path,
                        *roots.context_paths,
                        *roots.work_paths,
                    ]
                )
            ),
            admin_token_file=settings.admin_token_file,
            listen_ports=tuple(dict.fromkeys(ports)),
            site_dirs=tuple(settings.nginx_conf_dirs),
        )


def _port_of(listen: str) -> int:
    """The port of an nginx `listen` value: `80`, `127.0.0.1:80`, `[::]:443`."""
    return int(listen.split()[0].rpartition(":")[2])
