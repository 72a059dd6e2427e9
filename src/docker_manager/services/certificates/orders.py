"""One certificate task: for each domain `self-check`, `order`, `challenge`, `finalize`; then for all
of them at once `install` (the new pairs, the previous kept, the sites that now serve HTTPS: one
`nginx -t`, one reload) and `verify` (a TLS handshake per domain proves nginx serves the new serial;
if not, everything is put back). A domain that fails gets its error, its next attempt and the
reason in its record; the others go on. The old certificate stays served until a new one is."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker_manager import metrics
from docker_manager.adapters.acme import AcmeClient, Order
from docker_manager.adapters.nginx import FileChange, Nginx
from docker_manager.errors import AcmeError, DockerManagerError
from docker_manager.runner import TaskContext
from docker_manager.services.certificates.challenges import ChallengeBoard
from docker_manager.services.certificates.files import (
    CertificateFacts,
    facts_of,
    install_changes,
    new_key_pem,
    read_own,
    served_serial,
)
from docker_manager.services.certificates.options import CertificateOptions
from docker_manager.services.certificates.policy import next_attempt, with_facts
from docker_manager.services.certificates.store import CertificateRecord, CertificateStore
from docker_manager.services.observability.audit import AuditEntry, AuditLog
from docker_manager.services.sites.switch import TrafficSwitch
from docker_manager.util.clock import utcnow
from docker_manager.util.shield import run_to_the_end

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Issued:
    domain: str
    chain: bytes
    key: bytes
    facts: CertificateFacts


class CertificateOrders:
    """The work of a certificate task (the service starts it; the renewal loop too)."""

    def __init__(
        self,
        *,
        store: CertificateStore,
        nginx: Nginx,
        switch: TrafficSwitch,
        acme: AcmeClient,
        challenges: ChallengeBoard,
        options: CertificateOptions,
        audit: AuditLog | None = None,
    ) -> None:
        self._store = store
        self._nginx = nginx
        self._switch = switch
        self._acme = acme
        self._challenges = challenges
        self._options = options
        self._audit = audit

    async def run(self, ctx: TaskContext, domains: list[str]) -> dict[str, Any]:
        issued: list[Issued] = []
        failed: dict[str, str] = {}
        for domain in domains:
            try:
                issued.append(await self._obtain(ctx, domain))
            except DockerManagerError as exc:
                error = exc if isinstance(exc, AcmeError) else AcmeError(exc.detail, problem_type=exc.code)
                failed[domain] = error.detail
                await self._failed(ctx, domain, error)
        if issued:
            # Files, nginx and records agree at the end, whatever cancels the task meanwhile.
            installed, _ = await run_to_the_end(self._install_and_record(ctx, issued))
            for item in issued:
                if item not in installed:
                    record = await self._store.get(item.domain)
                    failed[item.domain] = f"install: {record.last_error if record else 'refused'}"
            issued = installed
        result = {
            "issued": {
                i.domain: {"serial": i.facts.serial, "not_after": i.facts.not_after.isoformat()}
                for i in issued
            },
            "failed": failed,
        }
        if failed and not issued:
            summary = "; ".join(f"{d}: {e}" for d, e in failed.items())
            raise AcmeError(summary, problem_type="order", failed=failed)
        return result

    # --- one domain ------------------------------------------------------------------------------
    async def _obtain(self, ctx: TaskContext, domain: str) -> Issued:
        record = await self._store.get(domain)
        if record is not None:
            busy = (
                "renewing" if record.serial and record.status in ("valid", "renewing", "error") else "pending"
            )
            await self._store.put(record.with_(status=busy, task_id=ctx.task_id))
        if self._options.self_check:
            async with _stage(ctx, "self-check", domain):
                await self._challenges.self_check(domain, self._options.self_check_address)
        key = await asyncio.to_thread(new_key_pem)
        async with _stage(ctx, "order", domain):
            order = await asyncio.to_thread(self._acme.place_order, domain, key)
        tokens: list[str] = []
        try:
            async with _stage(ctx, "challenge", domain):
                await asyncio.to_thread(self._acme.answer_challenges, order, self._challenges.publish, tokens)
            async with _stage(ctx, "finalize", domain):
                chain = await asyncio.to_thread(self._finalize, order)
        finally:
            for token in tokens:
                self._challenges.withdraw(token)
        facts = await asyncio.to_thread(facts_of, chain)
        return Issued(domain, chain, key, facts)

    def _finalize(self, order: Order) -> bytes:
        return self._acme.finalize(order, seconds=self._options.order_timeout).encode()

    # --- all of them -----------------------------------------------------------------------------
    async def _install_and_record(self, ctx: TaskContext, issued: list[Issued]) -> list[Issued]:
        """Install every pair with one verified reload; then each domain a TLS site serves must be
        served its new serial, and a domain that is not is put back alone. Each domain's record
        says how it went. The ones installed, returned."""
        await ctx.event("install", "starting", message=f"{len(issued)} certificate(s), one reload")
        try:
            installed, refused = await self._install_all(issued)
        except DockerManagerError as exc:
            for item in issued:
                await self._failed(ctx, item.domain, AcmeError(exc.detail, problem_type="install"))
            return []
        for item, reason in refused:
            await self._failed(ctx, item.domain, AcmeError(reason, problem_type="verify"))
        for item in installed:
            await self._valid(ctx, item)
        if installed:
            await ctx.event("install", "completed", message="installed, nginx reloaded once")
            await ctx.event("verify", "completed", message="nginx serves the new serials")
        return installed

    async def _install_all(self, issued: list[Issued]) -> tuple[list[Issued], list[tuple[Issued, str]]]:
        cert_dir = self._options.cert_dir
        assert cert_dir is not None  # (ACME needs it: checked with the settings)
        async with self._nginx.lock:
            sites = await asyncio.to_thread(self._switch.sites)
            on_tls = {header.domain for _, header in sites if header.tls.mode != "off"}
            per_domain: dict[str, list[FileChange]] = {}
            for item in issued:
                per_domain[item.domain] = await asyncio.to_thread(
                    install_changes, cert_dir, item.domain, item.chain, item.key
                ) + await asyncio.to_thread(self._switch.rendered_again, {item.domain}, certified=True)
            changes = [change for domain_changes in per_domain.values() for change in domain_changes]
            before = await asyncio.to_thread(_contents, changes)
            await self._nginx.apply_changes(changes)
            refused: list[tuple[Issued, str]] = []
            for item in issued:
                if item.domain not in on_tls:
                    continue  # no site serves it over TLS (yet): nothing to see on the TLS port
                serial = await asyncio.to_thread(served_serial, self._options.tls_address, item.domain)
                if serial != item.facts.serial:
                    refused.append(
                        (
                            item,
                            f"nginx serves serial {serial} for {item.domain}, not the new "
                            f"{item.facts.serial}: its previous certificate was put back",
                        )
                    )
            if refused:
                back = [
                    FileChange(change.path, before[change.path], change.mode)
                    for item, _ in refused
                    for change in per_domain[item.domain]
                ]
                await self._nginx.apply_changes(back)
        failed = {item.domain for item, _ in refused}
        return [item for item in issued if item.domain not in failed], refused

    # --- records ---------------------------------------------------------------------------------
    async def _valid(self, ctx: TaskContext, item: Issued) -> None:
        facts = item.facts
        record = await self._store.get(item.domain) or CertificateRecord(item.domain, "acme", "pending")
        cleared = record.with_(
            source="acme",
            last_error_type=None,
            last_error=None,
            permanent=False,
            failures=0,
            next_attempt_at=None,
            task_id=ctx.task_id,
            directory=self._options.directory_url,
        )
        await self._store.put(with_facts(cleared, facts))
        metrics.CERTIFICATE_NOT_AFTER.labels(domain=item.domain).set(facts.not_after.timestamp())
        metrics.CERTIFICATE_ORDERS.labels(result="issued").inc()
        await self._audited(ctx, item.domain, 200, None)

    async def _failed(self, ctx: TaskContext, domain: str, exc: AcmeError) -> None:
        """The failure in the domain's record: its type, detail, next attempt (none if permanent)."""
        now = utcnow()
        record = await self._store.get(domain) or CertificateRecord(domain, "acme", "pending")
        failures = record.failures + 1
        permanent = bool(exc.extra.get("permanent"))
        retry_after = exc.extra.get("retry_after")
        await self._store.put(
            record.with_(
                status="error",
                last_error_type=str(exc.extra.get("problem_type") or exc.code),
                last_error=exc.detail[:2000],
                permanent=permanent,
                failures=failures,
                next_attempt_at=None
                if permanent
                else next_attempt(
                    failures,
                    now,
                    first=self._options.retry_min_seconds,
                    longest=self._options.retry_max_seconds,
                    retry_after=float(retry_after) if retry_after is not None else None,
                ),
                task_id=ctx.task_id,
            )
        )
        metrics.CERTIFICATE_ORDERS.labels(result="permanent_error" if permanent else "error").inc()
        await self._audited(ctx, domain, 502, str(exc.extra.get("problem_type") or exc.code))
        log.warning("certificate for %s: %s", domain, exc.detail)

    async def _audited(self, ctx: TaskContext, domain: str, status: int, error: str | None) -> None:
        """Each order's outcome in the audit log, whoever started it (a request, a site signed, the
        renewal loop): the service's own work on certificates is seen there too."""
        if self._audit is None:
            return
        entry = AuditEntry(
            request_id=ctx.task_id,
            method="TASK",
            route="certificate order",
            status=status,
            duration_ms=0.0,
            token_name="docker-manager",  # noqa: S106 (who did it: the service, not a token)
            error_code=error,
            target={"domain": domain, "task_id": ctx.task_id},
        )
        try:
            await self._audit.record(entry)
        except DockerManagerError as exc:  # (the order's outcome is in its record either way)
            log.warning("the audit entry of %s's order was not written: %s", domain, exc.detail)


class _stage:
    """A stage's events for one domain: starting, then completed or failed (naming the stage)."""

    def __init__(self, ctx: TaskContext, stage: str, domain: str) -> None:
        self._ctx, self._stage, self._domain = ctx, stage, domain

    async def __aenter__(self) -> None:
        await self._ctx.event(self._stage, "starting", message=self._domain, domain=self._domain)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            await self._ctx.event(self._stage, "completed", message=self._domain, domain=self._domain)
        elif isinstance(exc, DockerManagerError):
            exc.detail = f"{self._stage}: {exc.detail}"
            await self._ctx.event(
                self._stage, "failed", message=exc.detail, level="error", domain=self._domain
            )


def _contents(changes: list[FileChange]) -> dict[Path, bytes | None]:
    """What each file of a change holds now (None: missing), to put a part of it back. Blocking."""
    return {change.path: read_own(change.path) for change in changes}
