"""Certificates: `/certificates` (status of every domain's), issue and renew by ACME, a certificate
given by hand, removal; and the HTTP-01 answers nginx forwards to `/.well-known/acme-challenge/`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse

from docker_manager.api.deps import AdminAccess, CertificatesDep, OperateAccess, ReadAccess
from docker_manager.errors import NotFound
from docker_manager.schemas.certificates import (
    CertificateDeleted,
    CertificateIssueStarted,
    CertificateUpload,
    CertificateView,
)
from docker_manager.schemas.sites import Domain

router = APIRouter(tags=["certificates"])
DomainPath = Annotated[
    Domain, Path(description="The domain (lower case; `*.` only for a certificate given by hand).")
]


@router.get("/certificates", response_model=list[CertificateView])
async def list_certificates(certificates: CertificatesDep, _: ReadAccess) -> list[CertificateView]:
    """Every domain with a certificate issued here, being issued, or given by hand: status, dates,
    serial, issuer, names, when it renews, the last error and the next attempt."""
    return await certificates.list_all()


@router.get("/certificates/{domain}", response_model=CertificateView)
async def get_certificate(
    domain: DomainPath, certificates: CertificatesDep, _: ReadAccess
) -> CertificateView:
    return await certificates.view(domain)


@router.post("/certificates/{domain}/issue", response_model=CertificateIssueStarted, status_code=202)
async def issue_certificate(
    domain: DomainPath,
    certificates: CertificatesDep,
    who: OperateAccess,
    force: Annotated[
        bool, Query(description="Also when a valid or a hand-made certificate is there.")
    ] = False,
) -> CertificateIssueStarted:
    """Order a certificate by ACME now, as a task of type `certificate` (stages `self-check`,
    `order`, `challenge`, `finalize`, `install`, `verify`). The site serves HTTP meanwhile and
    moves to HTTPS when nginx is proven to serve the new certificate. `operate` for the domains
    of its apps' sites; an admin for any other."""
    record = await certificates.issue(domain, who, force=force)
    return CertificateIssueStarted(task_id=record.id, domain=domain)


@router.put("/certificates/{domain}", response_model=CertificateView)
async def upload_certificate(
    domain: DomainPath, body: CertificateUpload, certificates: CertificatesDep, who: AdminAccess
) -> CertificateView:
    """A certificate given by hand (its chain and key): refused with the reason when the key does not
    match, its names do not cover the domain, it is not valid now, or the PEM does not parse.
    Installed with one verified reload; never renewed nor replaced by ACME unless asked."""
    return await certificates.upload(domain, body.certificate_pem, body.private_key_pem, who)


@router.delete("/certificates/{domain}", response_model=CertificateDeleted)
async def delete_certificate(
    domain: DomainPath, certificates: CertificatesDep, who: AdminAccess
) -> CertificateDeleted:
    """The domain's sites go back to HTTP, renewals stop, its files are removed."""
    return await certificates.delete(domain, who)


@router.get("/.well-known/acme-challenge/{token}", response_class=PlainTextResponse, include_in_schema=False)
async def acme_challenge(token: Annotated[str, Path(max_length=256)], certificates: CertificatesDep) -> str:
    """The answer to a CA's HTTP-01 challenge (nginx forwards port 80's requests here): public, and
    only while an order of this service waits for it."""
    answer = certificates.challenges.answer(token)
    if answer is None:
        raise NotFound("no such challenge")
    return answer
