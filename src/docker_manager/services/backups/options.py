"""What the backups domain is given: where this host keeps the state a backup holds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from docker_manager.config import Settings

# Settings that may hold a secret whatever their value: never copied into an archive.
SECRET_SETTINGS = frozenset({"admin_token", "auth_header", "swarm_registry_password"})


@dataclass(frozen=True, slots=True)
class BackupOptions:
    data_dir: Path
    database_url: str
    release_key: Path
    session_key: Path
    admin_token: Path
    acme_dir: Path
    nginx_conf_dirs: tuple[Path, ...]
    cert_dir: Path | None
    # where scheduled backups go (None: none are made), how often, how many are kept
    backup_dir: Path | None
    interval: float
    keep: int
    passphrase_file: Path | None
    # the service's listener: a restore refuses to run while something answers there
    listen: tuple[str, int]
    settings: dict[str, Any]

    @classmethod
    def of(cls, settings: Settings) -> BackupOptions:
        data = settings.data_dir.resolve()
        return cls(
            data_dir=data,
            database_url=settings.sqlalchemy_url,
            release_key=settings.secret_key_path,
            session_key=settings.session_key_path,
            admin_token=settings.admin_token_file,
            acme_dir=settings.acme_accounts_dir,
            nginx_conf_dirs=tuple(path.resolve() for path in settings.nginx_conf_dirs),
            cert_dir=settings.nginx_cert_dir.resolve() if settings.nginx_cert_dir else None,
            backup_dir=settings.backup_dir.resolve() if settings.backup_dir else None,
            interval=settings.backup_interval,
            keep=settings.backup_keep,
            passphrase_file=settings.backup_passphrase_file,
            listen=(settings.host, settings.port),
            settings=public_settings(settings),
        )

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file the database is in; None on PostgreSQL."""
        match = re.match(r"^sqlite(?:\+\w+)?:///(.+)$", self.database_url)
        return Path(match.group(1)) if match else None


def public_settings(settings: Settings) -> dict[str, Any]:
    """The settings an operator restoring elsewhere wants to compare with, without a secret: no
    secret field, and of every URL (the database's, the log receiver's) only its scheme, host,
    port and path: credentials and query arguments (`?password=`, `?token=`) left out."""
    values = settings.model_dump(mode="json")
    for name, value in list(values.items()):
        if name in SECRET_SETTINGS or isinstance(getattr(settings, name), SecretStr):
            values[name] = "(secret: not in the backup)" if value else None
        elif isinstance(value, str) and "://" in value:
            values[name] = _without_credentials(value)
    return values


def _without_credentials(url: str) -> str:
    scheme, rest = url.split("://", 1)
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    # The last "@" ends the credentials (a password may hold "/" or "@").
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"
