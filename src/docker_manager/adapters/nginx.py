"""nginx site files as transactions: render, test, replace, reload, verify, or roll back.

One lock serialises every change. A change is: write the candidate next to the live file (outside
the `*.conf` include glob), swap it in atomically keeping the previous bytes, `nginx -t` the whole
configuration, reload, and check that nginx really applied it: `nginx -s reload` returns 0 even
when the master then fails to apply the configuration (measured: docs/docker-adapter.md), so it must
be seen starting new worker processes. On any failure the previous file is put back and nginx
keeps serving the old configuration; the error says why, in nginx's words.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import psutil

from docker_manager import metrics
from docker_manager.errors import (
    DockerManagerError,
    NginxConfigError,
    NginxReloadFailed,
    NginxUnavailable,
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
HEADER_BYTES = 1024  # where the header must be: the start of the file
_HEADER_RE = re.compile(
    r"managed-by=docker-manager app_id=(\S*) domain=(\S+) port=(\d+)"
    r"(?: upstream=(\S+))?(?: container=([0-9a-f]{12,64}))?(?: published=([0-9]{1,5}/tcp))?"
    r"(?: kind=(managed|host))?(?: front=([0-9]{1,3}(?:\.[0-9]{1,3}){3}:[0-9]{1,5}))?"
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

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


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


def read_header(path: Path) -> SiteHeader | None:
    """The managed-site header of a file, or None if the file is not one of ours. Blocking."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return parse_header(handle.read(HEADER_BYTES))
    except OSError:
        return None


def parse_header(text: str) -> SiteHeader | None:
    """The managed-site header at the start of a site file's text, or None."""
    match = _HEADER_RE.search(text[:HEADER_BYTES])
    if match is None:
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
        ),
        front=match.group(8),
    )


def managed_sites(directories: list[Path]) -> list[tuple[Path, SiteHeader]]:
    """Every site file of this service in `directories`, with its header. Blocking."""
    found = []
    for directory in directories:
        for path in sorted(directory.glob("*.conf")):
            header = read_header(path)
            if header is not None:
                found.append((path, header))
    return found


@dataclass(frozen=True)
class NginxPaths:
    binary: str
    conf: Path | None
    prefix: Path | None
    pid_file: Path
    error_log: Path

    def argv(self, *extra: str) -> list[str]:
        argv = [self.binary]
        if self.prefix is not None:
            argv += ["-p", str(self.prefix)]
        if self.conf is not None:
            argv += ["-c", str(self.conf)]
        return [*argv, *extra]


class Nginx:
    def __init__(self, paths: NginxPaths, *, listen: str, tls_listen: str, cert_dir: Path | None) -> None:
        self.paths = paths
        self._listen = listen
        self._tls_listen = tls_listen
        self._cert_dir = cert_dir
        self.lock = asyncio.Lock()
        self.version: tuple[int, ...] | None = None
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=False,  # noqa: S701 (nginx config, not HTML; every value is validated first)
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )

    # --- rendering -----------------------------------------------------------------------------
    def render(
        self,
        *,
        ident: str,
        domain: str,
        upstream: Upstream,
        app_id: str | None,
        front: str | None = None,
    ) -> str:
        """The site file for validated values (domain, upstream and ids are checked by the caller).
        With `front`, nginx sends to that fixed address and the kernel moves it (no keep-alive pool
        to the upstream, so that every request follows the current rule)."""
        tls = self.certificate_of(domain)
        return self._env.get_template("site.conf.j2").render(
            # nginx >= 1.27.4 can keep idle keep-alive connections open briefly while old workers
            # wind down after a reload; older ones close them, and a client that reuses one at that
            # moment sees a reset (browsers retry; see docs/sites.md).
            keepalive_min_timeout=(self.version or (0,)) >= (1, 27, 4),
            ident=ident,
            domain=domain,
            port=upstream.port,
            upstream="down" if upstream.down else upstream.address,
            server=front or (f"{upstream.address} down" if upstream.down else upstream.address),
            front=front,
            container=upstream.container,
            published=upstream.published,
            down=upstream.down,
            kind=upstream.kind,
            app_id=app_id or "",
            listen=self._listen,
            tls_listen=self._tls_listen,
            tls=tls,
        )

    def certificate_of(self, domain: str) -> dict[str, str] | None:
        """The certificate and key files of `domain` in the cert dir, when both exist. Blocking."""
        if self._cert_dir is None:
            return None
        cert = self._cert_dir / f"{domain.replace('*', '_')}.crt"
        key = self._cert_dir / f"{domain.replace('*', '_')}.key"
        return {"cert": str(cert), "key": str(key)} if cert.is_file() and key.is_file() else None

    # --- state ---------------------------------------------------------------------------------
    def _master(self) -> psutil.Process:
        binary = shutil.which(self.paths.binary) or os.path.exists(self.paths.binary)
        if not binary:
            raise NginxUnavailable(f"nginx is not installed ({self.paths.binary} not found)")
        try:
            pid = int(self.paths.pid_file.read_text().strip())
            master = psutil.Process(pid)
            if master.status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(pid)
        except (OSError, ValueError, psutil.Error) as exc:
            raise NginxUnavailable(f"nginx is not running (no live master in {self.paths.pid_file})") from exc
        return master

    async def check_running(self) -> None:
        await asyncio.to_thread(self._master)
        if self.version is None:
            _, output = await self._run("-v")
            match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", output)
            self.version = tuple(int(part) for part in match.groups()) if match else (0,)

    async def _run(self, *args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            *self.paths.argv(*args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        return process.returncode or 0, output.decode("utf-8", "replace").strip()

    # --- the transaction -------------------------------------------------------------------------
    async def apply(self, target: Path, content: str | None) -> dict[str, Any]:
        """Make `target` hold `content` (None: remove it), live in nginx, or change nothing.

        The caller holds `self.lock`. Returns what happened, for the API's `nginx_reload`.
        """
        with metrics.outcome(metrics.NGINX_RELOADS, metrics.NGINX_RELOAD_DURATION):
            return await self._apply(target, content)

    async def _apply(self, target: Path, content: str | None) -> dict[str, Any]:
        await self.check_running()
        previous = await asyncio.to_thread(_read_bytes, target)
        await asyncio.to_thread(_install, target, content)
        try:
            code, output = await self._run("-t")
            if code != 0:
                raise NginxConfigError(f"nginx -t refused the configuration: {_tail(output)}")
            await self._reload_and_verify()
        except NginxReloadFailed:
            await asyncio.to_thread(_restore, target, previous)
            await self.reload()  # the old files again: whatever nginx half-did is undone
            raise
        except BaseException:
            await asyncio.to_thread(_restore, target, previous)
            raise
        return {"status": "reloaded", "tested": True, "verified": True}

    async def _reload_and_verify(self) -> None:
        master = await asyncio.to_thread(self._master)
        workers_before = await asyncio.to_thread(_worker_pids, master)
        log_offset = await asyncio.to_thread(_size, self.paths.error_log)
        code, output = await self._run("-s", "reload")
        if code != 0:
            raise NginxReloadFailed(f"nginx -s reload failed: {_tail(output)}")
        # Applied means: the master started workers with the new configuration.
        for _ in range(100):
            await asyncio.sleep(0.05)
            workers = await asyncio.to_thread(_worker_pids, master)
            if workers - workers_before:
                # Old workers stop taking new connections as they wind down; give them a moment so
                # that the next request is answered by the new configuration.
                for _ in range(20):
                    if not (await asyncio.to_thread(_worker_pids, master)) & workers_before:
                        break
                    await asyncio.sleep(0.05)
                return
            errors = await asyncio.to_thread(_errors_since, self.paths.error_log, log_offset)
            if errors:
                raise NginxReloadFailed(f"nginx did not apply the configuration: {errors}")
        errors = await asyncio.to_thread(_errors_since, self.paths.error_log, log_offset)
        raise NginxReloadFailed(f"nginx did not apply the configuration within 5 s {errors}".strip())

    async def rewrite(self, target: Path, content: str) -> None:
        """Replace a site file whose configuration is unchanged but for its header comments (a
        switch the kernel made): no test or reload is needed. The caller holds `self.lock`."""
        await asyncio.to_thread(_install, target, content)

    async def reload(self) -> None:
        """Reload after restoring a file (best effort: the previous configuration is valid)."""
        with contextlib.suppress(DockerManagerError):
            await self._reload_and_verify()


def same_configuration(old: str, new: str) -> bool:
    """Whether two site files differ only in their comment lines (what nginx ignores)."""

    def meaningful(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.lstrip().startswith("#")]

    return meaningful(old) == meaningful(new)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _install(target: Path, content: str | None) -> None:
    if content is None:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        return
    # The temporary name does not end in ".conf": an include glob never picks it up half-written.
    temporary = target.with_name(f".{target.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def _restore(target: Path, previous: bytes | None) -> None:
    if previous is None:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        return
    temporary = target.with_name(f".{target.name}.restore")
    temporary.write_bytes(previous)
    os.replace(temporary, target)


def _worker_pids(master: psutil.Process) -> set[int]:
    try:
        return {child.pid for child in master.children() if "worker" in " ".join(child.cmdline())}
    except psutil.Error:
        return set()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _errors_since(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read(64 * 1024).decode("utf-8", "replace")
    except OSError:
        return ""
    return " ".join(line.strip() for line in text.splitlines() if "[emerg]" in line or "[alert]" in line)


def _tail(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return " ".join(lines[-3:])[:2000]
