"""A real multi-node Docker Swarm on this one machine, for the tests (facts: shared notes'
swarm-lab.md): one network namespace per node, all joined by veth legs to a bridge in a namespace
of its own, one more leg giving the root namespace an address on the same /24, and one extra
`dockerd` per node with its own roots and socket. Nothing leaves the machine (no default route in
the nodes), and the main engine, its swarm state and its iptables are never touched.

    with swarm_lab(tmp_path, nodes=3) as lab:
        lab.nodes[0].socket  # unix socket of node 1's engine
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

LAB_NET = "10.213"  # 10.213.<lab>.0/24: the nodes .11, .12...; the root namespace .1


@dataclass
class SwarmNode:
    name: str  # also its namespace and hostname
    address: str
    root: Path  # data, exec and run folders (short: a unix socket path is at most 107 bytes)
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "d.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def docker(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this node's engine."""
        return subprocess.run(
            ["docker", "-H", self.docker_host, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            env={k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")},
        )


@dataclass
class SwarmLab:
    tag: str
    bridge_ns: str
    root_leg: str
    root_address: str
    nodes: list[SwarmNode] = field(default_factory=list)

    def load_image(self, tag: str, rootfs: Path) -> None:
        """The same image on every node (`docker import` of `rootfs`)."""
        for node in self.nodes:
            with rootfs.open("rb") as source:
                subprocess.run(
                    ["docker", "-H", node.docker_host, "import", "-", tag],
                    stdin=source,
                    capture_output=True,
                    check=True,
                    timeout=60,
                )

    def init(self, manager: SwarmNode | None = None) -> None:
        """`swarm init` on the first node (or `manager`), the others joined as workers."""
        first = manager or self.nodes[0]
        first.docker(
            "swarm", "init", "--advertise-addr", first.address, "--listen-addr", f"{first.address}:2377",
            "--default-addr-pool", "10.214.0.0/16", "--default-addr-pool-mask-length", "24",
        )  # fmt: skip
        token = first.docker("swarm", "join-token", "-q", "worker").stdout.strip()
        for node in self.nodes:
            if node is not first:
                node.docker("swarm", "join", "--token", token, f"{first.address}:2377")


def busybox_rootfs(target: Path) -> Path:
    """A tar of a root filesystem with only /bin/busybox (Debian's busybox-static): what
    `docker import` makes an image of, on nodes that cannot pull anything."""
    import io
    import tarfile

    busybox = Path(shutil.which("busybox") or "/bin/busybox")
    with tarfile.open(target, "w") as archive:
        info = tarfile.TarInfo("bin")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(info)
        data = busybox.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        archive.addfile(info, io.BytesIO(data))
    return target


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=60)


def _in(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run("ip", "netns", "exec", ns, *argv, check=check)


@contextlib.contextmanager
def swarm_lab(nodes: int = 3) -> Iterator[SwarmLab]:
    tag = f"{os.getpid() % 200 + 20}"
    lab = SwarmLab(
        tag=tag,
        bridge_ns=f"dmsw{tag}-sw",
        root_leg=f"dmsw{tag}r",
        root_address=f"{LAB_NET}.{tag}.1",
    )
    run_root = Path(f"/run/dmsw{tag}")
    try:
        _network(lab, nodes)
        run_root.mkdir(mode=0o700, exist_ok=True)
        for index in range(1, nodes + 1):
            name = f"dmsw{tag}-n{index}"
            node = SwarmNode(name=name, address=f"{LAB_NET}.{tag}.{10 + index}", root=run_root / f"n{index}")
            node.root.mkdir(mode=0o700, exist_ok=True)
            lab.nodes.append(node)
            _start_engine(lab, node)
        deadline = time.monotonic() + 60
        for node in lab.nodes:
            while node.docker("info", "--format", "{{.ID}}", check=False).returncode != 0:
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(
                        f"dockerd of {node.name} ended: {(node.root / 'dockerd.log').read_text()[-2000:]}"
                    )
                assert time.monotonic() < deadline, f"the engine of {node.name} did not answer"
                time.sleep(0.2)
        yield lab
    finally:
        _teardown(lab, run_root)


def _network(lab: SwarmLab, nodes: int) -> None:
    _run("ip", "netns", "add", lab.bridge_ns)
    _in(lab.bridge_ns, "ip", "link", "add", "br0", "type", "bridge")
    _in(lab.bridge_ns, "ip", "link", "set", "br0", "up")
    _in(lab.bridge_ns, "ip", "link", "set", "lo", "up")
    _run("ip", "link", "add", lab.root_leg, "type", "veth", "peer", "name", f"{lab.root_leg}b")
    _run("ip", "link", "set", f"{lab.root_leg}b", "netns", lab.bridge_ns)
    _in(lab.bridge_ns, "ip", "link", "set", f"{lab.root_leg}b", "master", "br0", "up")
    _run("ip", "addr", "add", f"{lab.root_address}/24", "dev", lab.root_leg)
    _run("ip", "link", "set", lab.root_leg, "up")
    for index in range(1, nodes + 1):
        ns, leg = f"dmsw{lab.tag}-n{index}", f"dmsw{lab.tag}v{index}"
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", leg, "type", "veth", "peer", "name", f"{leg}b")
        _run("ip", "link", "set", leg, "netns", ns)
        _run("ip", "link", "set", f"{leg}b", "netns", lab.bridge_ns)
        _in(lab.bridge_ns, "ip", "link", "set", f"{leg}b", "master", "br0", "up")
        _in(ns, "ip", "addr", "add", f"{LAB_NET}.{lab.tag}.{10 + index}/24", "dev", leg)
        _in(ns, "ip", "link", "set", leg, "up")
        _in(ns, "ip", "link", "set", "lo", "up")


def _start_engine(lab: SwarmLab, node: SwarmNode) -> None:
    config = node.root / "daemon.json"
    config.write_text(json.dumps({}))
    dockerd = " ".join(
        [
            "exec dockerd",
            f"--data-root {node.root}/data",
            f"--exec-root {node.root}/x",
            f"--pidfile {node.root}/d.pid",
            f"-H {node.docker_host}",
            f"--config-file {config}",
            f"--cgroup-parent {node.name}",
            "--iptables=true",
            f"--insecure-registry {lab.nodes[0].address}:5000",
        ]
    )
    log = (node.root / "dockerd.log").open("wb")
    node.process = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{node.name}",
            "unshare",
            "--uts",
            "sh",
            "-c",
            f"hostname {node.name}; {dockerd}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _teardown(lab: SwarmLab, run_root: Path) -> None:
    for node in lab.nodes:
        with contextlib.suppress(Exception):
            node.docker("swarm", "leave", "--force", check=False, timeout=20)
    for node in lab.nodes:
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
    for node in lab.nodes:
        if node.process is not None:
            try:
                node.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(timeout=10)
    namespaces = [node.name for node in lab.nodes] + [lab.bridge_ns]
    for ns in namespaces:  # whatever still lives in the lab's namespaces (containerd shims...)
        pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    if run_root.exists():
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{run_root}/")), key=len, reverse=True):
            _run("umount", "-l", mount, check=False)
    for node in lab.nodes:  # the engines' cgroups, under every controller
        for controller in Path("/sys/fs/cgroup").iterdir():
            group = controller / node.name
            if group.is_dir():
                for child in sorted(group.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                    if child.is_dir():
                        with contextlib.suppress(OSError):
                            child.rmdir()
                with contextlib.suppress(OSError):
                    group.rmdir()
    for ns in namespaces:
        _run("ip", "netns", "delete", ns, check=False)
    _run("ip", "link", "delete", lab.root_leg, check=False)
    shutil.rmtree(run_root, ignore_errors=True)
