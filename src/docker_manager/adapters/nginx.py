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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import psutil

from docker_manager import metrics
from docker_manager.adapters.site_header import SiteTls, Upstream
from docker_manager.errors import (
    DockerManagerError,
    NginxConfigError,
    NginxReloadFailed,
    NginxUnavailable,
)
from docker_manager.util.files import write_atomic

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
DEFAULTS_FILE = "_docker-manager.conf"  # (no app id or domain starts with "_": never a site's name)


@dataclass(frozen=True)
class FileChange:
    """One file of an nginx change: its new bytes (None: removed) and mode."""

    path: Path
    content: bytes | None
    mode: int = 0o644


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
    def __init__(
        self,
        paths: NginxPaths,
        *,
        listen: str,
        tls_listen: str,
        cert_dir: Path | None,
        challenge_upstream: str | None = None,
    ) -> None:
        self.paths = paths
        self._listen = listen
        self._tls_listen = tls_listen
        self._cert_dir = cert_dir
        # Where port 80's /.well-known/acme-challenge/ goes (this service), when ACME is on.
        self._challenge = challenge_upstream
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
        tls: SiteTls | None = None,
        certified: bool | None = None,
    ) -> str:
        """The site file for validated values (domain, upstream and ids are checked by the caller).
        With `front`, nginx sends to that fixed address and the kernel moves it (no keep-alive pool
        to the upstream, so that every request follows the current rule)."""
        options = tls or SiteTls()
        files = self.certificate_of(domain, exists=certified) if options.mode != "off" else None
        return self._env.get_template("site.conf.j2").render(
            # nginx >= 1.27.4 can keep idle keep-alive connections open briefly while old workers
            # wind down after a reload; older ones close them, and a client that reuses one at that
            # moment sees a reset (browsers retry; see docs/sites.md).
            keepalive_min_timeout=(self.version or (0,)) >= (1, 27, 4),
            ident=ident,
            domain=domain,
            port=upstream.port,
            upstream="down" if upstream.down else upstream.address,
            servers=_servers(upstream, front),
            service=upstream.service,
            servers_header=",".join(upstream.servers) if not upstream.down else "",
            front=front,
            container=upstream.container,
            published=upstream.published,
            down=upstream.down,
            kind=upstream.kind,
            app_id=app_id or "",
            listen=self._listen,
            tls_listen=self._tls_listen,
            tls=files,
            tls_mode=options.mode,
            hsts=options.hsts,
            http2=self._http2(),
            challenge=self._challenge,
        )

    def _http2(self) -> str:
        """How this nginx turns HTTP/2 on: the `http2` directive from 1.25.1, else on `listen`."""
        return "directive" if (self.version or (0,)) >= (1, 25, 1) else "listen"

    def render_defaults(self, pending_domains: list[str]) -> str:
        """The file that refuses unknown names on the TLS port and answers the HTTP-01 challenges
        of domains that have no site yet (ACME on)."""
        return self._env.get_template("defaults.conf.j2").render(
            # (ssl_reject_handshake: nginx 1.19.4 and later; before, no refusing default server)
            reject_handshake=(self.version or (0,)) >= (1, 19, 4),
            tls_listen=self._tls_listen,
            listen=self._listen,
            domains=sorted(pending_domains),
            challenge=self._challenge,
        )

    def certificate_of(self, domain: str, *, exists: bool | None = None) -> dict[str, str] | None:
        """The certificate and key files of `domain` in the cert dir, when both exist (`exists`:
        whether they will, in the change being made). Blocking."""
        if self._cert_dir is None:
            return None
        cert, key = certificate_files(self._cert_dir, domain)
        if exists is None:
            exists = cert.is_file() and key.is_file()
        return {"cert": str(cert), "key": str(key)} if exists else None

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

    async def test_configuration(self) -> str | None:
        """`nginx -t` of the whole configuration as it is on disk: None when it passes, else the
        last lines nginx wrote."""
        code, output = await self._run("-t")
        return None if code == 0 else _tail(output)

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
        return await self.apply_changes([FileChange(target, None if content is None else content.encode())])

    async def apply_changes(
        self, changes: list[FileChange], verify: Callable[[], Awaitable[None]] | None = None
    ) -> dict[str, Any]:
        """Several files (site files, certificates and keys) as one change: all written, one
        `nginx -t`, one verified reload, then `verify` (a check of what nginx serves now); on any
        failure every file is put back and nginx serves what it did. The caller holds `self.lock`."""
        with metrics.outcome(metrics.NGINX_RELOADS, metrics.NGINX_RELOAD_DURATION):
            return await self._apply(changes, verify)

    async def _apply(
        self, changes: list[FileChange], verify: Callable[[], Awaitable[None]] | None
    ) -> dict[str, Any]:
        await self.check_running()
        previous = [await asyncio.to_thread(_read_bytes, change.path) for change in changes]
        try:
            for change in changes:
                await asyncio.to_thread(_install, change.path, change.content, change.mode)
            code, output = await self._run("-t")
            if code != 0:
                raise NginxConfigError(f"nginx -t refused the configuration: {_tail(output)}")
            await self._reload_and_verify()
            if verify is not None:
                await verify()
        except BaseException as exc:
            for change, before in zip(changes, previous, strict=True):
                await asyncio.to_thread(_install, change.path, before, change.mode)
            if not isinstance(exc, NginxConfigError):  # (refused by -t: nginx never took it)
                await self.reload()  # the old files again: whatever nginx half-did is undone
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
        await asyncio.to_thread(_install, target, content.encode())

    async def reload(self) -> None:
        """Reload after restoring a file (best effort: the previous configuration is valid)."""
        with contextlib.suppress(DockerManagerError):
            await self._reload_and_verify()


def _servers(upstream: Upstream, front: str | None) -> list[str]:
    """The upstream block's servers: the front, else every replica of a swarm app (one that fails
    is left alone a few seconds, and the request goes to the next), else the one upstream."""
    if front:
        return [front]
    if upstream.down:
        return [f"{upstream.address} down"]
    if upstream.servers:
        return [f"{server} max_fails=1 fail_timeout=5s" for server in upstream.servers]
    return [upstream.address]


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


def certificate_files(cert_dir: Path, domain: str) -> tuple[Path, Path]:
    """Where `domain`'s certificate (full chain) and key are: `{domain}.crt`, `{domain}.key`."""
    name = domain.replace("*", "_")
    return cert_dir / f"{name}.crt", cert_dir / f"{name}.key"


def _install(target: Path, content: bytes | None, mode: int = 0o644) -> None:
    """The file's new bytes (None: removed), swapped in whole with its mode from the first byte.
    (write_atomic's temporary name does not end in ".conf": an include glob never picks it up.)"""
    if content is None:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        return
    write_atomic(target, content, mode=mode)


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
