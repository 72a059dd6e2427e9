"""Certificates: what an operator sees of each domain's, and a hand-made pair."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from docker_manager.schemas.common import ResponseModel, StrictModel


class CertificateView(ResponseModel):
    domain: str
    source: str = Field(description="acme (issued and renewed here) or custom (given by hand).")
    status: str = Field(description="pending, valid, renewing, error or expired.")
    not_before: datetime | None = None
    not_after: datetime | None = None
    days_left: float | None = Field(None, description="Until not_after, in days.")
    serial: str | None = None
    issuer: str | None = None
    sans: list[str] = Field(default_factory=list)
    renew_at: datetime | None = Field(None, description="When the renewal loop orders a new one.")
    last_error: dict[str, str] | None = Field(
        None, description="`type` (the CA's problem type, or selfCheck, install...) and `detail`."
    )
    permanent_error: bool = Field(False, description="No retry until someone asks again (issue).")
    next_attempt_at: datetime | None = None
    task_id: str | None = Field(None, description="The last task that ordered or installed it.")
    served_by_site: bool = Field(description="Whether a site serves the domain (else it is not renewed).")


class CertificateUpload(StrictModel):
    certificate_pem: str = Field(
        max_length=64 * 1024, description="The certificate, then its chain (PEM), as nginx serves it."
    )
    private_key_pem: str = Field(max_length=16 * 1024, description="Its key (PEM, unencrypted).")


class CertificateIssueStarted(ResponseModel):
    task_id: str
    status: str = "started"
    domain: str


class CertificateDeleted(ResponseModel):
    status: str = "deleted"
    domain: str
    files_removed: list[str]
