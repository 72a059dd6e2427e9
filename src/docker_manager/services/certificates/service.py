"""Certificates for the domains the managed nginx serves: issued and renewed by ACME when
`DM_ACME_ENABLED`, or given by hand (admin). What the API, the CLI and the dashboard show.

A site is signed at once and serves HTTP; when its domain has no certificate, a certificate task
starts (the switch never waits on the CA) and the site moves to HTTPS with a redirect when the
certificate is installed. Who may ask: `operate` for the domains of its own apps' sites, an admin
for the rest (host-level sites, domains with no site, certificates given by hand, deletions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from docker_manager import metrics
from docker_manager.adapters.acme import AcmeAccounts, AcmeClient
from docker_manager.adapters.nginx import DEFAULTS_FILE, FileChange, Nginx, certificate_files
from docker_manager.adapters.site_header import SiteTls
from docker_manager.auth import Principal
from docker_manager.errors import (
    Conflict,
    DockerManagerError,
    Forbidden,
    InvalidInput,
    NotFound,
    Throttled,
    Unsupported,
)
from docker_manager.runner import TaskContext, TaskKind, TaskRecord, TaskRunner, TaskSpec, new_task_id
from docker_manager.schemas.certificates import CertificateDeleted, CertificateView
from docker_manager.services.certificates.challenges import ChallengeBoard
from docker_manager.services.certificates.files import (
    CertificateFacts,
    check_pair,
    facts_of,
    install_changes,
    is_ip_address,
    pair_on_disk,
    removal_changes,
    repair_pair,
)
from docker_manager.services.certificates.options import CertificateOptions
from docker_manager.services.certificates.orders import CertificateOrders
from docker_manager.services.certificates.policy import is_due, with_facts
from docker_manager.services.certificates.renewal_info import RenewalInfo
from docker_manager.services.certificates.store import CertificateRecord, CertificateStore
from docker_manager.services.certificates.views import view_of
from docker_manager.services.observability.audit import AuditLog
from docker_manager.services.sites import SiteService
from docker_manager.util.clock import utcnow

log = logging.getLogger(__name__)

CERTIFICATE_TASK = "certificate"
BY_HAND = "by-hand"  # in `_ordering`: an upload or a deletion holds the domain
FORCE_COOLDOWN = 3600.0  # seconds between two forced orders of a domain by a non-admin (CA limits)


class CertificateService:
    def __init__(
        self,
        *,
        store: CertificateStore,
        nginx: Nginx,
        sites: SiteService,
        runner: TaskRunner,
        options: CertificateOptions,
        audit: AuditLog | None = None,
    ) -> None:
        self._store = store
        self._nginx = nginx
        self._sites = sites
        self._runner = runner
        self._options = options
        self.challenges = ChallengeBoard()
        self._ordering: dict[str, str] = {}  # domain -> the task ordering for it now, or BY_HAND
        self._forced: dict[str, float] = {}  # domain -> when a non-admin last forced an order
        self._orders: CertificateOrders | None = None
        self.renewal_info: RenewalInfo | None = None  # (the CA's own renewal moments, when it has them)
        if options.enabled:
            acme = AcmeClient(
                options.directory_url,
                AcmeAccounts(options.accounts_dir),
                email=options.email,
                ca_bundle=options.ca_bundle,
            )
            self._orders = CertificateOrders(
                store=store,
                nginx=nginx,
                switch=sites.switch,
                acme=acme,
                challenges=self.challenges,
                options=options,
                audit=audit,
            )
            self.renewal_info = RenewalInfo(acme=acme, store=store, options=options)
            sites.switch.on_pointed(self._site_pointed)

    @property
    def enabled(self) -> bool:
        return self._orders is not None

    # --- reads -----------------------------------------------------------------------------------
    async def list_all(self) -> list[CertificateView]:
        served = await self._served_domains()
        now = utcnow()
        return [view_of(record, now, record.domain in served) for record in await self._store.list()]

    async def view(self, domain: str) -> CertificateView:
        record = await self._store.get(domain)
        if record is None:
            raise NotFound(f"no certificate for {domain}", field="domain")
        return view_of(record, utcnow(), domain in await self._served_domains())

    # --- requests --------------------------------------------------------------------------------
    async def issue(self, domain: str, principal: Principal, *, force: bool = False) -> TaskRecord:
        """Order a certificate for `domain` now (`force`: also when a valid one or a custom one is
        there). 4xx before any task: ACME off, a name a CA cannot validate by HTTP-01, no right to
        the domain's site, an order already running."""
        if not self.enabled:
            raise Unsupported("automatic certificates are off (DM_ACME_ENABLED)", field="domain")
        _check_orderable(domain)
        await self._check_rights(domain, principal)
        record = await self._store.get(domain) or await self._adopted(domain)
        if record is not None and record.source == "custom":
            if not force:
                raise Conflict(f"{domain} has a certificate given by hand; force=true replaces it")
            if not principal.is_admin:
                raise Forbidden(f"{domain}'s certificate was given by hand: an admin's to replace")
        elif record is not None and not force and record.shown_status(utcnow()) == "valid":
            raise Conflict(f"{domain}'s certificate is valid until {record.not_after}; force=true renews it")
        if force and not principal.is_admin:
            self._check_cooldown(domain)
        return await self.start([domain], reason="asked")

    async def upload(
        self, domain: str, chain_pem: str, key_pem: str, principal: Principal
    ) -> CertificateView:
        """A certificate given by hand (admin): checked, installed with one verified reload, never
        renewed nor replaced by ACME unless asked."""
        cert_dir = self._require_cert_dir()
        facts = await asyncio.to_thread(check_pair, domain, chain_pem.encode(), key_pem.encode(), utcnow())
        with self._held_by_hand(domain):  # no order installs over it meanwhile
            async with self._nginx.lock:
                changes = await asyncio.to_thread(
                    install_changes, cert_dir, domain, chain_pem.encode(), key_pem.encode()
                )
                changes += await asyncio.to_thread(
                    self._sites.switch.rendered_again, {domain}, certified=True
                )
                await self._nginx.apply_changes(changes)
            record = custom_record(domain, facts)
            await self._store.put(record)
        metrics.CERTIFICATE_NOT_AFTER.labels(domain=domain).set(facts.not_after.timestamp())
        return view_of(record, utcnow(), domain in await self._served_domains())

    async def delete(self, domain: str, principal: Principal) -> CertificateDeleted:
        """The domain's certificate goes (admin): its sites back to HTTP, renewals stop, files removed."""
        cert_dir = self._require_cert_dir()
        record = await self._store.get(domain)
        if record is None:
            raise NotFound(f"no certificate for {domain}", field="domain")
        with self._held_by_hand(domain):
            async with self._nginx.lock:
                changes = await asyncio.to_thread(removal_changes, cert_dir, domain)
                # Its sites say `tls: off` from now on: no order brings it back unless asked for.
                changes += await asyncio.to_thread(
                    self._sites.switch.rendered_again, {domain}, certified=False, tls=SiteTls(mode="off")
                )
                await self._nginx.apply_changes(changes)
            await self._store.delete(domain)
        with contextlib.suppress(KeyError):  # (no gauge for it yet)
            metrics.CERTIFICATE_NOT_AFTER.remove(domain)
        removed = [str(c.path) for c in changes if c.content is None]
        return CertificateDeleted(domain=domain, files_removed=removed)

    # --- the tasks -------------------------------------------------------------------------------
    async def start(self, domains: list[str], *, reason: str) -> TaskRecord:
        """One certificate task for `domains` (those with an order running are left out)."""
        assert self._orders is not None
        orders = self._orders
        task_id = new_task_id(CERTIFICATE_TASK)
        wanted = [d for d in dict.fromkeys(domains) if d not in self._ordering]
        if not wanted:
            raise Conflict(f"a certificate task or an upload for {', '.join(domains)} is running")
        for domain in wanted:  # (claimed before any await: two starts never order one domain twice)
            self._ordering[domain] = task_id
        for domain in wanted:
            if await self._store.get(domain) is None:
                await self._store.put(CertificateRecord(domain, "acme", "pending", task_id=task_id))
        await self._challenge_server()  # (domains with no site yet answer their challenges)

        async def work(ctx: TaskContext) -> dict[str, Any]:
            await ctx.event(None, "reason", message=f"{reason}: {', '.join(wanted)}", domains=wanted)
            try:
                return await orders.run(ctx, wanted)
            finally:
                for domain in wanted:
                    if self._ordering.get(domain) == task_id:
                        del self._ordering[domain]
                await self._challenge_server()  # their challenges are no longer answered

        try:
            return await self._runner.submit(
                TaskSpec(task_type=CERTIFICATE_TASK, work=work, task_id=task_id, kind=TaskKind.CERTIFICATE)
            )
        except BaseException:
            for domain in wanted:
                self._ordering.pop(domain, None)
            raise

    async def due(self) -> list[str]:
        """The domains the renewal loop should order for now: served by a site with TLS on, not
        running."""
        served = await self._served_domains(tls_only=True)
        now = utcnow()
        return [
            r.domain
            for r in await self._store.list()
            if r.domain in served and r.domain not in self._ordering and is_due(r, now)
        ]

    async def recover(self) -> None:
        """At start: orders an earlier process left half-way are finished by the next check; the
        gauge shows every certificate's end."""
        for record in await self._store.list():
            if self._options.cert_dir is not None and await asyncio.to_thread(
                repair_pair, self._options.cert_dir, record.domain
            ):
                log.error(
                    "%s: its key did not match its certificate (a crash during an install); "
                    "the previous pair is back",
                    record.domain,
                )
                record = await self._refreshed(record)
            if record.status == "renewing":
                await self._store.put(record.with_(status="valid"))
            if record.not_after is not None:
                metrics.CERTIFICATE_NOT_AFTER.labels(domain=record.domain).set(record.not_after.timestamp())
        for domain in await self._served_domains(tls_only=True):
            await self._adopted(domain)  # pairs put in the cert dir by hand are theirs, not ACME's
        if self.enabled:
            await self._challenge_server()

    # --- internals -------------------------------------------------------------------------------
    async def _refreshed(self, record: CertificateRecord) -> CertificateRecord:
        """The record again from the certificate file on disk (after a repair)."""
        assert self._options.cert_dir is not None
        cert, _ = certificate_files(self._options.cert_dir, record.domain)
        facts = facts_of(await asyncio.to_thread(cert.read_bytes))
        updated = with_facts(record, facts)
        await self._store.put(updated)
        return updated

    async def _site_pointed(self, domain: str, tls: SiteTls) -> None:
        """A site now serves `domain`: when it has no certificate yet, one is ordered."""
        try:
            if domain in self._ordering:
                await self._challenge_server()  # a site serves it now: the defaults file no longer
                return
            if tls.mode == "off" or "*" in domain:
                return
            if await self._store.get(domain) is not None or await self._adopted(domain) is not None:
                return
            await self.start([domain], reason="site signed")
        except Exception:  # (never the switch's failure)
            log.exception("could not start a certificate task for %s", domain)

    async def _adopted(self, domain: str) -> CertificateRecord | None:
        """A pair found in the cert dir with no record (put there by hand, or by certbot): recorded
        as `custom`, so that no order replaces it unless an admin asks."""
        cert_dir = self._options.cert_dir
        if cert_dir is None or await self._store.get(domain) is not None:
            return None
        facts = await asyncio.to_thread(pair_on_disk, cert_dir, domain)
        if facts is None:
            return None
        record = custom_record(domain, facts)
        await self._store.put(record)
        log.info("%s: a certificate found in %s is kept as given by hand", domain, cert_dir)
        return record

    def _check_cooldown(self, domain: str) -> None:
        now = time.monotonic()
        last = self._forced.get(domain)
        if last is not None and now - last < FORCE_COOLDOWN:
            wait = int(FORCE_COOLDOWN - (now - last)) + 1
            raise Throttled(
                f"{domain} was ordered again less than an hour ago (CAs limit duplicate certificates); "
                "an admin token may force it",
                retry_after=wait,
            )
        self._forced[domain] = now

    @contextlib.contextmanager
    def _held_by_hand(self, domain: str) -> Iterator[None]:
        if domain in self._ordering:
            raise Conflict(f"a certificate task or an upload for {domain} is running", field="domain")
        self._ordering[domain] = BY_HAND
        try:
            yield
        finally:
            if self._ordering.get(domain) == BY_HAND:
                del self._ordering[domain]

    async def _challenge_server(self) -> None:
        """The defaults file: unknown names refused on the TLS port, and the challenges of domains
        being ordered that no site serves answered on port 80 (only while their order runs: a site
        made later for such a domain would otherwise share its name with this file). A failure is
        logged, not raised: domains with a site do not need the file."""
        target = self._sites.conf_dir(None) / DEFAULTS_FILE
        served = await self._served_domains()
        waiting = [d for d, holder in self._ordering.items() if holder != BY_HAND and d not in served]
        try:
            await self._nginx.check_running()  # (and learns its version: the file depends on it)
            content = (await asyncio.to_thread(self._nginx.render_defaults, waiting)).encode()
            if await asyncio.to_thread(_same, target, content):
                return
            async with self._nginx.lock:
                await self._nginx.apply_changes([FileChange(target, content)])
        except DockerManagerError as exc:
            log.warning("the defaults file %s was not written: %s", target, exc.detail)

    async def _served_domains(self, *, tls_only: bool = False) -> set[str]:
        sites = await asyncio.to_thread(self._sites.switch.sites)
        return {header.domain for _, header in sites if not tls_only or header.tls.mode != "off"}

    async def _check_rights(self, domain: str, principal: Principal) -> None:
        """operate: the domain's sites must all be of apps it may act on and not an admin's."""
        sites = [h for _, h in await asyncio.to_thread(self._sites.switch.sites) if h.domain == domain]
        if principal.is_admin:
            return
        if not sites:
            raise Forbidden(
                f"no site serves {domain}: a certificate for it needs an admin token", field="domain"
            )
        for header in sites:
            self._sites.check_site_owner(header, principal)
            principal.require_app(header.app_id, f"the site of {domain}")

    def _require_cert_dir(self) -> Path:
        if self._options.cert_dir is None:
            raise Unsupported("no certificate folder is configured (DM_NGINX_CERT_DIR)", field="domain")
        return self._options.cert_dir


def _check_orderable(domain: str) -> None:
    if "*" in domain:
        raise InvalidInput(
            "a wildcard needs a DNS-01 challenge; this service validates by HTTP-01", field="domain"
        )
    if is_ip_address(domain):
        raise InvalidInput("certificates are issued for names, not IP addresses", field="domain")


def _same(path: Path, content: bytes) -> bool:
    try:
        return path.read_bytes() == content
    except FileNotFoundError:
        return False


def custom_record(domain: str, facts: CertificateFacts) -> CertificateRecord:
    return with_facts(CertificateRecord(domain, "custom", "valid"), facts)
