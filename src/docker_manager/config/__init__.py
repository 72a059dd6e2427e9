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
from typing import Any

from pydantic import field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from docker_manager.config.backups import BackupFields
from docker_manager.config.certificates import CertificateFields
from docker_manager.config.platform import DEFAULT_DATA_DIR, PlatformFields
from docker_manager.config.swarm import SwarmFields
from docker_manager.config.work import WorkFields

__all__ = ["DEFAULT_DATA_DIR", "Roots", "Settings", "config_file_path"]


def config_file_path() -> Path:
    """Where `config.json` is read from: `$DM_CONFIG`, else `./config.json`."""
    return Path(os.environ.get("DM_CONFIG", "config.json"))


class Settings(BackupFields, SwarmFields, CertificateFields, WorkFields, PlatformFields, BaseSettings):
    """Every knob of the service, its fields in groups (`platform`, `work`, `certificates`,
    `swarm`, then `backups`: pydantic lists the bases' fields last base first);
    docs/configuration.md is written from them."""

    model_config = SettingsConfigDict(env_prefix="DM_", extra="ignore", frozen=True)

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
        if self.acme_enabled and self.nginx_cert_dir is None:
            raise ValueError("DM_ACME_ENABLED needs DM_NGINX_CERT_DIR (where certificates are kept)")
        if self.public_domain is not None and self.nginx_cert_dir is None:
            raise ValueError("DM_PUBLIC_DOMAIN needs DM_NGINX_CERT_DIR (its certificate is kept there)")
        return self

    @property
    def accepted_hosts(self) -> list[str]:
        """`allowed_hosts`, and the public domain when there is one."""
        return self.allowed_hosts + ([self.public_domain] if self.public_domain else [])

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
    def session_key_path(self) -> Path:
        """The key the dashboard's sessions are sealed with (made on the first start)."""
        return self.data_dir.resolve() / "session-key"

    @cached_property
    def acme_accounts_dir(self) -> Path:
        """ACME account keys, one folder per directory URL."""
        return self.data_dir.resolve() / "acme"

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
