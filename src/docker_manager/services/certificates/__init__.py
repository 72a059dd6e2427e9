"""Certificates: issued and renewed by ACME (HTTP-01 through the managed nginx), or given by hand."""

from docker_manager.services.certificates.service import CertificateService

__all__ = ["CertificateService"]
