"""The renewal loop, inside the service (not cron): every `DM_ACME_RENEW_CHECK_SECONDS` it orders
for the domains that are due (a third of their lifetime left, the CA's suggested moment when it
offers renewal information, or a failed order whose wait is over) and still served by a site, in
one task; and it warns in the log about certificates near their end."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from docker_manager.errors import DockerManagerError
from docker_manager.services.certificates.policy import WARN_BEFORE
from docker_manager.services.certificates.service import CertificateService
from docker_manager.util.clock import utcnow

log = logging.getLogger(__name__)


class RenewalLoop:
    def __init__(self, certificates: CertificateService, *, every: float) -> None:
        self._certificates = certificates
        self._every = every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._certificates.enabled:
            self._task = asyncio.create_task(self._run(), name="certificate-renewals")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # the next check tries again; the reason is in the log
                log.exception("certificate renewal check failed")
            await asyncio.sleep(self._every)

    async def check(self) -> None:
        if self._certificates.renewal_info is not None:
            await self._certificates.renewal_info.check()
        due = await self._certificates.due()
        if due:
            try:
                await self._certificates.start(due, reason="renewal")
            except DockerManagerError as exc:
                log.warning("certificate renewal of %s not started: %s", ", ".join(due), exc.detail)
        now = utcnow()
        for view in await self._certificates.list_all():
            if view.served_by_site and view.not_after is not None and view.not_after - now < WARN_BEFORE:
                log.warning(
                    "the certificate of %s ends %s (%s, %s)%s",
                    view.domain,
                    view.not_after.isoformat(timespec="seconds"),
                    view.source,
                    view.status,
                    f": {view.last_error['detail']}" if view.last_error else "",
                )
