"""What the certificates domain is configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from docker_manager.config import Settings


def _loopback_address(listen: str) -> str:
    """`address:port` to reach an nginx `listen` value from this host (a bare port, `*` or an
    unspecified address: loopback)."""
    address = listen.split()[0]
    if ":" not in address or address.startswith("*:"):
        return f"127.0.0.1:{address.rpartition(':')[2]}"
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]"):
        return f"{'127.0.0.1' if host == '0.0.0.0' else '[::1]'}:{port}"
    return address


@dataclass(frozen=True, slots=True)
class CertificateOptions:
    enabled: bool  # DM_ACME_ENABLED: issue and renew by ACME
    directory_url: str
    email: str | None
    ca_bundle: Path | None
    cert_dir: Path | None  # where `{domain}.crt` / `{domain}.key` live (nginx reads them)
    accounts_dir: Path  # one ACME account per directory, 0700
    self_check: bool
    self_check_address: str | None  # None: the domain's own address (DNS), port 80
    tls_address: str  # nginx's TLS listener, for the handshake that proves what it serves
    renew_check_seconds: float
    retry_min_seconds: float
    retry_max_seconds: float
    order_timeout: float

    @classmethod
    def of(cls, settings: Settings) -> CertificateOptions:
        return cls(
            enabled=settings.acme_enabled,
            directory_url=settings.acme_directory_url,
            email=settings.acme_email,
            ca_bundle=settings.acme_ca_bundle,
            cert_dir=settings.nginx_cert_dir,
            accounts_dir=settings.acme_accounts_dir,
            self_check=settings.acme_self_check,
            self_check_address=settings.acme_self_check_address,
            tls_address=_loopback_address(settings.nginx_tls_listen),
            renew_check_seconds=settings.acme_renew_check_seconds,
            retry_min_seconds=settings.acme_retry_min_seconds,
            retry_max_seconds=settings.acme_retry_max_seconds,
            order_timeout=settings.acme_order_timeout,
        )
