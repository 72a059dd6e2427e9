"""What watches the service from outside: the scrape-time metrics, the optional token-less metrics
port on loopback, and SIGHUP reopening the audit file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from docker_manager import metrics
from docker_manager.runner.outbox import OutboxDispatcher
from docker_manager.services.host.disk import DiskService
from docker_manager.services.observability.audit import AuditLog
from docker_manager.services.observability.options import ObservabilityOptions
from docker_manager.util.cache import SingleFlightCache

log = logging.getLogger(__name__)


@dataclass
class Observers:
    collector: metrics.StateCollector
    server: Any = None  # the metrics port's WSGI server, when DM_METRICS_PORT is set
    hup_installed: bool = False
    # /metrics renders at most once a second, shared by every scraper.
    exposition: SingleFlightCache[bytes] = field(default_factory=lambda: SingleFlightCache(ttl=1.0))

    @classmethod
    def start(
        cls,
        options: ObservabilityOptions,
        *,
        disk: DiskService,
        outbox: OutboxDispatcher | None,
        audit: AuditLog,
    ) -> Observers:
        def roots() -> Iterable[tuple[str, Path]]:
            yield from (
                ("data", options.roots.data_dir),
                ("builds", options.roots.builds_path),
                ("upload", options.roots.upload_path),
            )
            if disk.known_engine_root is not None:
                yield "engine", disk.known_engine_root

        collector = metrics.StateCollector(roots, outbox.backlog if outbox is not None else None)
        metrics.watch_state(collector)
        observers = cls(collector)
        if options.metrics_port is not None:
            # Loopback only, no token: for a scraper on this host. A thread of prometheus-client's.
            observers.server, _thread = start_http_server(
                options.metrics_port, addr="127.0.0.1", registry=metrics.REGISTRY
            )
        if options.audit_file is not None:
            observers.hup_installed = _on_sighup(audit.reopen)
        return observers

    def stop(self) -> None:
        metrics.stop_watching(self.collector)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.hup_installed:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
                # Not the default action (ending the process): a logrotate during shutdown is harmless.
                signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _on_sighup(callback: Any) -> bool:
    """logrotate moves the audit file and sends SIGHUP: the next entry opens a new one."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, callback)
    except (NotImplementedError, RuntimeError, ValueError) as exc:  # not the main thread
        log.warning("SIGHUP will not reopen the audit file: %s", exc)
        return False
    return True
