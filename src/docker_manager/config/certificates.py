"""Settings of automatic HTTPS: the ACME CA, the account's contact, the renewal loop, the service's own
public domain."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

# Names an operator may give instead of a URL (staging first: its limits are generous).
ACME_DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}


class CertificateFields(BaseModel):
    # --- automatic HTTPS (ACME) --------------------------------------------------------------
    acme_enabled: bool = Field(
        False,
        description=(
            "Issue and renew certificates for signed domains with an ACME CA (HTTP-01 through the "
            "managed nginx). Needs `nginx_cert_dir`."
        ),
    )
    acme_directory: str = Field(
        "letsencrypt",
        description=(
            "The CA's directory URL, or `letsencrypt` / `letsencrypt-staging` (try staging first). "
            "Each directory has its own account."
        ),
    )
    acme_email: str | None = Field(
        None,
        pattern=r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}$",
        description="The account's contact address (optional).",
    )
    acme_ca_bundle: Path | None = Field(
        None, description="CA certificates to trust for the ACME server's own HTTPS (a private CA)."
    )
    acme_self_check: bool = Field(
        True,
        description=(
            "Before an order, fetch a probe through the domain (connecting to "
            "`acme_self_check_address`): a domain that does not point here costs no failed "
            "validation at the CA."
        ),
    )
    acme_self_check_address: str | None = Field(
        None,
        pattern=r"^[0-9.]{7,15}:\d{1,5}$",
        description=(
            "`address:port` the self-check connects to. Default: where the domain's name resolves, port "
            "80, as the CA connects (set it when this host cannot reach its own public address)."
        ),
    )
    acme_renew_check_seconds: float = Field(
        3600.0, gt=0, le=86400, description="How often the renewal loop looks for certificates to renew."
    )
    acme_retry_min_seconds: float = Field(
        60.0, gt=0, le=86400, description="The first wait after a failed order (then doubling, with jitter)."
    )
    acme_retry_max_seconds: float = Field(
        86400.0, gt=0, le=7 * 86400, description="The longest wait between failed orders of one domain."
    )
    acme_order_timeout: float = Field(
        90.0, gt=0, le=3600, description="Seconds an order may take from placing it to the certificate."
    )

    # --- the service itself on HTTPS ---------------------------------------------------------
    public_domain: str | None = Field(
        None,
        max_length=253,
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$",
        description=(
            "A domain for the API and the dashboard themselves, served by the managed nginx (a site "
            "of kind host, admin-only) with an automatic certificate; the service keeps listening "
            "where `host` says, and its session cookie is `Secure` on that domain."
        ),
    )

    @field_validator("acme_directory")
    @classmethod
    def _directory(cls, value: str) -> str:
        if value in ACME_DIRECTORIES or value.startswith("https://"):
            return value
        raise ValueError("a https:// URL, letsencrypt or letsencrypt-staging")

    @property
    def acme_directory_url(self) -> str:
        return ACME_DIRECTORIES.get(self.acme_directory, self.acme_directory)
