"""Prometheus metrics: named once here, moved by the layers that know what happened.

One process serves one registry (`REGISTRY`, with the standard process, platform and GC
collectors). Labels are bounded: route templates, task types, stages, kinds and outcomes, never a
task id, container id or path.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
for _standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_standard)

# Few buckets: every bucket is a line per label set in each scrape (the cost of a scrape).
FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
SLOW = (0.1, 0.5, 2.0, 10.0, 30.0, 120.0, 600.0, 3600.0)

# --- HTTP ------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "dm_http_requests",
    "Requests answered, by route template.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "dm_http_request_duration_seconds",
    "Time to the start of the answer, by route template.",
    ["method", "route"],
    buckets=FAST,
    registry=REGISTRY,
)

CONNECTIONS_CLOSED = Counter(
    "dm_connections_closed",
    "Client connections the listener closed: header_timeout, body_timeout, evicted (room for a "
    "new one), full (no room).",
    ["reason"],
    registry=REGISTRY,
)
STREAMS_REFUSED = Counter(
    "dm_streams_refused", "Live streams refused at a cap, by which cap.", ["cap"], registry=REGISTRY
)

# --- tasks -----------------------------------------------------------------------------------
TASKS_CREATED = Counter("dm_tasks_created", "Tasks created, by type.", ["type"], registry=REGISTRY)
TASKS_FINISHED = Counter(
    "dm_tasks_finished", "Tasks that ended, by type and final status.", ["type", "status"], registry=REGISTRY
)
TASKS_RUNNING = Gauge("dm_tasks_running", "Tasks running now, by kind.", ["kind"], registry=REGISTRY)
TASKS_QUEUED = Gauge("dm_tasks_queued", "Tasks waiting for a slot, by kind.", ["kind"], registry=REGISTRY)
TASK_DURATION = Histogram(
    "dm_task_duration_seconds", "Task run time, by type.", ["type"], buckets=SLOW, registry=REGISTRY
)
TASK_QUEUE_WAIT = Histogram(
    "dm_task_queue_wait_seconds",
    "Time a task waited for its slot, by type.",
    ["type"],
    buckets=SLOW,
    registry=REGISTRY,
)
STAGE_DURATION = Histogram(
    "dm_task_stage_duration_seconds",
    "Time of the stages of tasks (build, export, upload, load, health, switch...), by type and stage.",
    ["type", "stage"],
    buckets=SLOW,
    registry=REGISTRY,
)

# --- the engine ------------------------------------------------------------------------------
ENGINE_UP = Gauge("dm_engine_up", "1 when the last engine call reached the engine.", registry=REGISTRY)
ENGINE_DURATION = Histogram(
    "dm_engine_request_duration_seconds",
    "Engine calls, by operation (method and path template).",
    ["operation"],
    buckets=FAST,
    registry=REGISTRY,
)
ENGINE_ERRORS = Counter(
    "dm_engine_errors", "Engine calls that failed, by the service's error code.", ["code"], registry=REGISTRY
)

# --- nginx and switches ----------------------------------------------------------------------
NGINX_RELOADS = Counter("dm_nginx_reloads", "nginx reloads, by result.", ["result"], registry=REGISTRY)
NGINX_RELOAD_DURATION = Histogram(
    "dm_nginx_reload_duration_seconds",
    "Test, reload and verification of nginx.",
    buckets=FAST,
    registry=REGISTRY,
)
SWITCHES = Counter(
    "dm_traffic_switches",
    "Traffic switches (sign-domain, update-port, rollback), by result.",
    ["kind", "result"],
    registry=REGISTRY,
)

# --- health checks, SFTP, the external log stream --------------------------------------------
HEALTH_CHECKS = Counter(
    "dm_health_checks", "Health checks after a localrun, by outcome.", ["outcome"], registry=REGISTRY
)
SFTP_BYTES = Counter("dm_sftp_bytes", "Bytes uploaded over SFTP.", registry=REGISTRY)
SFTP_DURATION = Histogram(
    "dm_sftp_upload_seconds", "SFTP uploads (all attempts).", buckets=SLOW, registry=REGISTRY
)
LOG_STREAM_DELIVERIES = Counter(
    "dm_log_stream_deliveries", "External log stream deliveries, by result.", ["result"], registry=REGISTRY
)

# --- releases and retention ------------------------------------------------------------------
CERTIFICATE_NOT_AFTER = Gauge(
    "dm_certificate_not_after_seconds",
    "When each domain's served certificate ends (Unix time).",
    ["domain"],
    registry=REGISTRY,
)
CERTIFICATE_ORDERS = Counter(
    "dm_certificate_orders",
    "Certificate orders (issues and renewals), by result: issued, error, permanent_error.",
    ["result"],
    registry=REGISTRY,
)
RELEASES = Counter("dm_releases", "Releases recorded, by source.", ["source"], registry=REGISTRY)

# --- swarm apps ------------------------------------------------------------------------------
SWARM_REPLICAS = Gauge(
    "dm_swarm_replicas",
    "Replicas of each swarm app meant to run, by state (running, starting, pending...).",
    ["app_id", "state"],
    registry=REGISTRY,
)
SWARM_ROLLOUTS = Counter(
    "dm_swarm_rollouts",
    "Swarm rollouts (deploys, rollbacks, scales), by outcome: completed, rolled_back, undone.",
    ["outcome"],
    registry=REGISTRY,
)
BACKUPS = Counter(
    "dm_backups",
    "Backups of this service's state, by trigger (schedule, api) and result.",
    ["trigger", "result"],
    registry=REGISTRY,
)
BACKUP_LAST_SUCCESS = Gauge(
    "dm_backup_last_success_timestamp_seconds",
    "When the last scheduled backup was written.",
    registry=REGISTRY,
)
BACKUP_LAST_SIZE = Gauge("dm_backup_last_size_bytes", "Size of the last scheduled backup.", registry=REGISTRY)
GC_RECLAIMED = Counter("dm_gc_reclaimed_bytes", "Bytes retention reclaimed.", registry=REGISTRY)


@contextmanager
def outcome(counter: Counter, duration: Histogram | None = None, **labels: str) -> Iterator[None]:
    """Count the block's result (`result="ok"` or `"error"`) and time it."""
    started = time.monotonic()
    try:
        yield
    except BaseException:
        counter.labels(**labels, result="error").inc()
        raise
    else:
        counter.labels(**labels, result="ok").inc()
    finally:
        if duration is not None:
            (duration.labels(**labels) if labels else duration).observe(time.monotonic() - started)


class StateCollector(Collector):
    """Figures read at scrape time: free disk per root, the log stream's backlog."""

    def __init__(
        self,
        roots: Callable[[], Iterable[tuple[str, Path]]],
        backlog: Callable[[], tuple[int, float]] | None,
    ) -> None:
        self._roots = roots
        self._backlog = backlog

    def collect(self) -> Iterable[GaugeMetricFamily]:
        free = GaugeMetricFamily(
            "dm_disk_free_bytes", "Free bytes of the filesystem under each root.", labels=["root"]
        )
        total = GaugeMetricFamily(
            "dm_disk_total_bytes", "Size of the filesystem under each root.", labels=["root"]
        )
        for name, path in self._roots():
            try:
                usage = shutil.disk_usage(path)
            except OSError:
                continue
            free.add_metric([name], usage.free)
            total.add_metric([name], usage.total)
        yield free
        yield total
        if self._backlog is not None:
            size, age = self._backlog()
            yield GaugeMetricFamily("dm_log_stream_backlog", "Payloads waiting for delivery.", value=size)
            yield GaugeMetricFamily(
                "dm_log_stream_oldest_age_seconds", "Age of the oldest undelivered payload.", value=age
            )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


_state: StateCollector | None = None


def watch_state(collector: StateCollector) -> None:
    """Register the scrape-time figures of the running service (replacing an earlier one)."""
    global _state
    if _state is not None:
        REGISTRY.unregister(_state)
    REGISTRY.register(collector)
    _state = collector


def stop_watching(collector: StateCollector) -> None:
    global _state
    if _state is collector:
        REGISTRY.unregister(collector)
        _state = None
