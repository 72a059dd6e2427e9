"""ACME Renewal Information (ARI, RFC 9773): the CA says when a certificate should be renewed.

A CA that must revoke early (a mis-issuance, a key compromise at the CA) moves its suggested
window forward; a client that only counts days renews too late. Each ACME certificate this CA
issued is asked about at most as often as the CA's Retry-After allows (six hours by default), and
a suggestion earlier than the lifetime rule's moment becomes the record's `renew_at`, so the
renewal loop orders then. A CA without renewal information (pebble 2.4, older CAs) changes
nothing. The next-question times live in memory: a restart asks once more, which ARI allows.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from docker_manager.adapters.acme import AcmeClient
from docker_manager.adapters.nginx import certificate_files
from docker_manager.errors import DockerManagerError
from docker_manager.services.certificates.options import CertificateOptions
from docker_manager.services.certificates.policy import with_suggestion
from docker_manager.services.certificates.store import CertificateStore
from docker_manager.util.clock import utcnow

log = logging.getLogger(__name__)


class RenewalInfo:
    def __init__(self, *, acme: AcmeClient, store: CertificateStore, options: CertificateOptions) -> None:
        self._acme = acme
        self._store = store
        self._options = options
        self._ask_again: dict[str, datetime] = {}  # domain -> not before then

    async def check(self) -> list[str]:
        """Ask about every certificate whose time has come; the domains whose renewal moved."""
        moved = []
        for record in await self._store.list():
            now = utcnow()
            if record.source != "acme" or record.status != "valid" or self._options.cert_dir is None:
                continue
            if record.directory != self._acme.directory_url or self._ask_again.get(record.domain, now) > now:
                continue  # (another CA's certificate: this CA knows nothing of it)
            crt, _ = certificate_files(self._options.cert_dir, record.domain)
            try:
                pem = await asyncio.to_thread(crt.read_bytes)
                suggested, self._ask_again[record.domain] = await asyncio.to_thread(
                    self._acme.renewal_window, pem
                )
            except (OSError, DockerManagerError) as exc:  # (asked again at the next check)
                log.warning("renewal information for %s: %s", record.domain, exc)
                continue
            changed = with_suggestion(record, suggested)
            if changed is not record:
                await self._store.put(changed)
                log.info("%s: the CA suggests renewing at %s (ARI)", record.domain, changed.renew_at)
                moved.append(record.domain)
        return moved
