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
from datetime import datetime, timedelta

from docker_manager.adapters.acme import AcmeClient
from docker_manager.adapters.nginx import certificate_files
from docker_manager.errors import DockerManagerError
from docker_manager.services.certificates.options import CertificateOptions
from docker_manager.services.certificates.policy import with_suggestion
from docker_manager.services.certificates.store import CertificateRecord, CertificateStore
from docker_manager.util.clock import utcnow

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE = timedelta(hours=1)  # a certificate whose question failed is asked again then


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
            except OSError as exc:
                log.warning("renewal information for %s: %s", record.domain, exc)
                self._ask_again[record.domain] = now + RETRY_AFTER_FAILURE
                continue
            except DockerManagerError as exc:  # (the CA cannot be reached: the others wait too)
                log.warning("renewal information for %s: %s", record.domain, exc.detail)
                self._ask_again[record.domain] = now + RETRY_AFTER_FAILURE
                break
            if await self._renew_earlier(record, suggested):
                moved.append(record.domain)
        return moved

    async def _renew_earlier(self, asked: CertificateRecord, suggested: datetime | None) -> bool:
        """The suggestion applied to the record as it is now, if it still describes the same
        certificate (an order or an upload may have replaced it while the CA was asked)."""
        current = await self._store.get(asked.domain)
        if current is None or (current.source, current.serial, current.status) != (
            asked.source,
            asked.serial,
            "valid",
        ):
            return False
        changed = with_suggestion(current, suggested)
        if changed is current:
            return False
        await self._store.put(changed)
        log.info("%s: the CA suggests renewing at %s (ARI)", asked.domain, changed.renew_at)
        return True
