"""The header a managed site file starts with: what the file says about itself.

Every site file this service writes begins with one comment line naming its app, domain, upstream
and options; the service reads its sites back from these headers (after a restart too), so the
files are the one record of where each domain points.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

HEADER_BYTES = 4096  # where the header must be: the start of the file
MARKER = "managed-by=docker-manager"
# A lower-case RFC 1123 name with at least two labels; a wildcard only as the whole first label
# (the rule of every domain a request may name: schemas/sites.py uses it too).
DOMAIN_RE = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
# Every value has the grammar the service writes, nothing wider: a header is read back from disk
# (and from a restored backup), and what it says is rendered into nginx's configuration again.
_HEADER_RE = re.compile(
    r"managed-by=docker-manager app_id=((?:[A-Za-z0-9][A-Za-z0-9_.-]{0,62})?)"
    r" domain=([a-z0-9*][a-z0-9.*-]{0,252}) port=(\d{1,5})"
    r"(?: upstream=(down|[0-9]{1,3}(?:\.[0-9]{1,3}){3}:[0-9]{1,5}))?"
    r"(?: container=([0-9a-f]{12,64}))?(?: published=([0-9]{1,5}/tcp))?"
    r"(?: kind=(managed|host))?(?: front=([0-9]{1,3}(?:\.[0-9]{1,3}){3}:[0-9]{1,5}))?"
    r"(?: tls=(auto|off|only))?(?: hsts=([0-9]{1,9}))?"
    r"(?: service=([A-Za-z0-9][A-Za-z0-9_.-]{0,62}))?(?: servers=([0-9.:,]{9,2900}))?[ \t]*(?:\r?\n|\Z)"
)


@dataclass(frozen=True)
class Upstream:
    """Where a site sends its requests: a host port on loopback, or a container's bridge address.

    `container` names the container the site follows: its bridge address (rewritten if the
    container comes back from a restart with another one), or with `published` the host port the
    engine publishes that container port on (rewritten when a restart publishes it elsewhere).
    A host process an admin pointed a site at has no container.
    """

    host: str
    port: int
    container: str | None = None
    # The container port (`80/tcp`) whose host port this is, for a site that follows a container
    # through the host port it publishes.
    published: str | None = None
    # The container is not running: nginx answers 503 itself rather than send the traffic to
    # whoever gets its address or its freed host port next.
    down: bool = False
    # "managed": a container of this service; "host": what only an admin may point a site at
    # (a process on the host, a container made by hand or with host-level options).
    kind: str = "managed"
    # A swarm app's site: the service whose running replicas it follows, and where each answers
    # (node address and host port; `host`:`port` is the first). Empty: no replica runs (`down`).
    service: str | None = None
    servers: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SiteTls:
    """A site's HTTPS: `auto` serves TLS (and redirects port 80) when a certificate for its domain
    is in the cert dir, `off` never, `only` as auto but never plain HTTP (503 until the certificate:
    this service's own site); `hsts` is the Strict-Transport-Security max-age (0: none)."""

    mode: str = "auto"
    hsts: int = 0


@dataclass(frozen=True)
class TlsChange:
    """What a request changes of a site's HTTPS options; None keeps what the site has."""

    mode: str | None = None
    hsts: int | None = None

    def applied_to(self, current: SiteTls) -> SiteTls:
        return SiteTls(mode=self.mode or current.mode, hsts=current.hsts if self.hsts is None else self.hsts)


@dataclass(frozen=True)
class SiteHeader:
    """What a managed site file says about itself (its first lines)."""

    app_id: str | None
    domain: str
    port: int
    upstream: Upstream
    # nginx's fixed address for the site, which the kernel moves to `upstream` (netfilter.py);
    # None: nginx itself points at `upstream` (a switch reloads it).
    front: str | None = None
    tls: SiteTls = field(default_factory=SiteTls)


def read_header(path: Path) -> SiteHeader | None:
    """The managed-site header of a file, or None if the file is not one of ours. Blocking."""
    start = _start_of(path)
    return parse_header(start) if start is not None else None


def _start_of(path: Path) -> str | None:
    """The part of a file a header must be in (None: unreadable)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return handle.read(HEADER_BYTES)
    except OSError:
        return None


def parse_header(text: str) -> SiteHeader | None:
    """The managed-site header at the start of a site file's text, or None."""
    match = _HEADER_RE.search(text[:HEADER_BYTES])
    if match is None or not DOMAIN_RE.fullmatch(match.group(2)) or int(match.group(3)) > 65535:
        return None
    port = int(match.group(3))
    recorded = match.group(4) or "127.0.0.1"
    down = recorded == "down"
    host = "127.0.0.1" if down else (recorded.rpartition(":")[0] or "127.0.0.1")
    return SiteHeader(
        app_id=match.group(1) or None,
        domain=match.group(2),
        port=port,
        upstream=Upstream(
            host=host,
            port=port,
            container=match.group(5),
            published=match.group(6),
            down=down,
            kind=match.group(7) or "managed",
            service=match.group(11),
            servers=tuple(server for server in (match.group(12) or "").split(",") if server),
        ),
        front=match.group(8),
        tls=SiteTls(mode=match.group(9) or "auto", hsts=int(match.group(10) or 0)),
    )


def managed_sites(directories: list[Path]) -> list[tuple[Path, SiteHeader]]:
    """Every site file of this service in `directories`, with its header. Blocking."""
    return scan_sites(directories)[0]


def unreadable_sites(directories: list[Path]) -> list[Path]:
    """Files that say they are this service's sites and whose header does not parse (edited by
    hand, cut): the service no longer sees them, while nginx may still serve them. Blocking."""
    return scan_sites(directories)[1]


def scan_sites(directories: list[Path]) -> tuple[list[tuple[Path, SiteHeader]], list[Path]]:
    """Both at once, each file read once: this service's sites with their headers, and the files
    that carry its mark without a header that parses. Blocking."""
    sites: list[tuple[Path, SiteHeader]] = []
    unreadable: list[Path] = []
    for directory in directories:
        for path in sorted(directory.glob("*.conf")):
            start = _start_of(path)
            header = parse_header(start) if start is not None else None
            if header is not None:
                sites.append((path, header))
            elif start is not None and MARKER in start:
                unreadable.append(path)
    return sites, unreadable
