"""Stable site addresses moved by the kernel: a DNAT rule per site, replaced atomically.

nginx sends a site's requests to a fixed loopback address of its own (its *front*, in
DM_SWITCH_FRONT_NETWORK, 127.77.0.0/16 by default). One rule in the `nat` table's OUTPUT path
sends new connections to that address on to the live container's host port. A traffic switch
replaces the rule in one `iptables-restore` transaction: new connections go to the new container
at once, connections already open keep their conntrack entry and finish on the old one, and nginx
is not reloaded (nginx before 1.27.4 drops idle keep-alive client connections on a reload:
clients that reuse one see a reset).

Layout: `OUTPUT -d {front network} -j DM-SITES`, then one jump per site to a chain `DMS-<hash>`
that holds its single DNAT rule. Only loopback upstreams are moved this way (a DNAT from loopback
to a bridge address would need route_localnet); other sites keep the reload path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import shutil
from typing import TypeGuard

from docker_manager.errors import SwitchFailed

log = logging.getLogger(__name__)

# A port nothing listens on (binding it needs root): when a rule is missing, nginx gets a refused
# connection (502) rather than reaching a listener on all addresses, such as nginx itself.
FRONT_PORT = 1
PARENT = "DM-SITES"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_TIMEOUT = 30.0


def front_of(index: int, network: ipaddress.IPv4Network) -> str:
    """The `index`-th front (0-based) in `network` (DM_SWITCH_FRONT_NETWORK, inside 127.0.0.0/8)."""
    address = network.network_address + 1 + index
    if address >= network.broadcast_address:
        raise SwitchFailed(f"no front address left in {network}")
    return f"{address}:{FRONT_PORT}"


def chain_of(front: str) -> str:
    return "DMS-" + hashlib.sha256(front.encode()).hexdigest()[:16]


def _valid_front(front: str) -> tuple[str, int]:
    host, _, port = front.rpartition(":")
    address = ipaddress.ip_address(host)  # ValueError for anything else
    if address not in LOOPBACK or not port.isdigit():
        raise ValueError(f"not a front address: {front!r}")
    return host, int(port)


def _valid_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if ipaddress.ip_address(host) != ipaddress.ip_address("127.0.0.1") or not port.isdigit():
        raise ValueError(f"a front leads only to a loopback port, not {target!r}")
    if not 0 < int(port) < 65536:
        raise ValueError(f"not a port: {port}")
    return host, int(port)


class Netfilter:
    """The `iptables` binary, as root; `available()` says whether this host can do it at all."""

    def __init__(self, network: ipaddress.IPv4Network, binary: str = "iptables") -> None:
        self.network = network
        self._binary = shutil.which(binary) or binary
        self._restore = shutil.which(f"{binary}-restore") or f"{binary}-restore"
        self._lock = asyncio.Lock()

    async def available(self) -> bool:
        """Root, iptables, and Docker's userland proxy on: with it off the engine DNATs
        127.0.0.1 ports itself in nat OUTPUT, which never runs for packets we translated."""
        if os.geteuid() != 0 or not shutil.which(self._binary):
            return False
        code, output = await self._run(self._binary, "-w", "5", "-t", "nat", "-S", "OUTPUT")
        if code != 0:
            return False
        for line in output.splitlines():
            if line.endswith("-j DOCKER") and "! -d 127.0.0.0/8" not in line:
                log.warning("Docker's userland proxy is off: traffic switches reload nginx")
                return False
        return True

    async def point(self, front: str, target: str) -> None:
        """New connections to `front` go to `target` (a loopback host:port) from now on."""
        host, port = _valid_front(front)
        _, target_port = _valid_target(target)
        chain = chain_of(front)
        async with self._lock:
            await self._ensure_parent()
            linked = await self._has(PARENT, "-j", chain)
            lines = [
                "*nat",
                f":{chain} - [0:0]",  # declared: emptied and refilled in this one transaction
                f"-A {chain} -d {host}/32 -p tcp --dport {port} "
                f"-j DNAT --to-destination 127.0.0.1:{target_port}",
                *([] if linked else [f"-A {PARENT} -j {chain}"]),
                "COMMIT",
            ]
            await self._apply(lines)

    def owns(self, front: str | None) -> TypeGuard[str]:
        """Whether `front` is one of this service's (a site header is only trusted that far)."""
        if not front:
            return False
        try:
            host, port = _valid_front(front)
        except ValueError:
            return False
        return port == FRONT_PORT and ipaddress.ip_address(host) in self.network

    async def remove(self, front: str) -> None:
        """The front leads nowhere any more (its site is gone)."""
        _valid_front(front)
        chain = chain_of(front)
        async with self._lock:
            if not await self._has(PARENT, "-j", chain):
                return
            await self._apply(["*nat", f"-D {PARENT} -j {chain}", f"-F {chain}", f"-X {chain}", "COMMIT"])

    async def _ensure_parent(self) -> None:
        # Checked on every change: someone may have flushed the nat table since the last one.
        if await self._has("OUTPUT", "-d", str(self.network), "-j", PARENT):
            return
        code, _ = await self._run(self._binary, "-w", "5", "-t", "nat", "-S", PARENT)
        if code != 0:
            await self._apply(["*nat", f":{PARENT} - [0:0]", "COMMIT"])
        await self._apply(["*nat", f"-I OUTPUT -d {self.network} -j {PARENT}", "COMMIT"])

    async def _has(self, chain: str, *rule: str) -> bool:
        code, _ = await self._run(self._binary, "-w", "5", "-t", "nat", "-C", chain, *rule)
        return code == 0

    async def _apply(self, lines: list[str]) -> None:
        code, output = await self._run(self._restore, "-w", "5", "--noflush", stdin="\n".join(lines) + "\n")
        if code != 0:
            raise SwitchFailed(f"iptables-restore refused the change: {output.strip()[:500]}")

    @staticmethod
    async def _run(*argv: str, stdin: str | None = None) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(
                process.communicate(stdin.encode() if stdin is not None else None), timeout=_TIMEOUT
            )
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise SwitchFailed(f"{argv[0]} did not answer within {_TIMEOUT:.0f} s") from None
        return process.returncode or 0, output.decode("utf-8", "replace")
