"""A real multi-node Docker Swarm on this one machine, for the tests (facts: shared notes'
swarm-lab.md): one network namespace per node, all joined by veth legs to a bridge in a namespace
of its own, one more leg giving the root namespace an address on the same /24, and one extra
`dockerd` per node with its own roots and socket. Nothing leaves the machine (no default route in
the nodes), and the main engine, its swarm state and its iptables are never touched.

    with swarm_lab(nodes=3) as lab:
        lab.init()             # node 1 the manager, the others workers
        lab.nodes[0].docker_host  # unix socket of node 1's engine
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
    # What was made, as it was made: a teardown removes exactly these (never another lab's).
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

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
                    env={k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")},
                )

    @contextlib.contextmanager
    def registry(self, username: str = "lab", password: str = "lab-pass-123") -> Iterator[str]:
        """A private registry (Debian's docker-registry, htpasswd) in the first node's namespace, on
        its address port 5000 (every engine of the lab trusts it without TLS): its address."""
        first = self.nodes[0]
        root = first.root / "registry"
        root.mkdir(mode=0o700)
        hashed = _run("htpasswd", "-Bbn", username, password).stdout
        (root / "htpasswd").write_text(hashed)
        (root / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {root / 'data'}\n"
            f"http:\n  addr: {first.address}:5000\nauth:\n  htpasswd:\n    realm: lab\n"
            f"    path: {root / 'htpasswd'}\n"
        )
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        process = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{first.name}", binary, "serve", str(root / "config.yml")],
            stdout=subprocess.DEVNULL,
            stderr=(root / "registry.log").open("wb"),
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 20
            probe = f"exec 3<>/dev/tcp/{first.address}/5000"
            while _in(first.name, "bash", "-c", probe, check=False).returncode:
                assert process.poll() is None, (root / "registry.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "the lab registry did not listen"
                time.sleep(0.1)
            yield f"{first.address}:5000"
        finally:
            process.terminate()
            process.wait(timeout=10)

    def stop_node(self, node: SwarmNode) -> None:
        """The node is lost: its engine and containers killed, its link down (nothing answers)."""
        if node.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(timeout=10)
        pids = _run("ip", "netns", "pids", node.name, check=False).stdout.split()
        for group in _cgroups(node.name):  # (its containers, each in a namespace of its own)
            pids += [pid for procs in group.rglob("cgroup.procs") for pid in procs.read_text().split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        leg = f"dmsw{self.tag}v{self.nodes.index(node) + 1}"
        _in(node.name, "ip", "link", "set", leg, "down", check=False)

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
    lab, run_root = _claim()
    try:
        _network(lab, nodes)
        for index in range(1, nodes + 1):
            name = f"dmsw{lab.tag}-n{index}"
            node = SwarmNode(
                name=name, address=f"{LAB_NET}.{lab.tag}.{10 + index}", root=run_root / f"n{index}"
            )
            node.root.mkdir(mode=0o700)
            lab.nodes.append(node)
            _start_engine(lab, node)
        deadline = time.monotonic() + 60
        for node in lab.nodes:
            while node.docker("info", "--format", "{{.ID}}", check=False).returncode != 0:
                if node.process is not None and node.process.poll() is not None:
                    log = (node.root / "dockerd.log").read_text()[-2000:]
                    raise RuntimeError(f"dockerd of {node.name} ended: {log}")
                assert time.monotonic() < deadline, f"the engine of {node.name} did not answer"
                time.sleep(0.2)
        yield lab
    finally:
        _teardown(lab, run_root)


def _claim() -> tuple[SwarmLab, Path]:
    """A tag no other lab uses: its run folder made here, exclusively (another test session's, or
    a crashed run's leftovers, are never reused nor removed)."""
    first = os.getpid() % 200 + 20
    for tag in (str(20 + (first - 20 + step) % 200) for step in range(200)):
        run_root = Path(f"/run/dmsw{tag}")
        if Path(f"/run/netns/dmsw{tag}-sw").exists():
            continue
        try:
            run_root.mkdir(mode=0o700)
        except FileExistsError:
            continue
        lab = SwarmLab(
            tag=tag, bridge_ns=f"dmsw{tag}-sw", root_leg=f"dmsw{tag}r", root_address=f"{LAB_NET}.{tag}.1"
        )
        return lab, run_root
    raise RuntimeError("no free swarm lab tag under /run")


def _network(lab: SwarmLab, nodes: int) -> None:
    _run("ip", "netns", "add", lab.bridge_ns)
    lab.namespaces.append(lab.bridge_ns)
    _in(lab.bridge_ns, "ip", "link", "add", "br0", "type", "bridge")
    _in(lab.bridge_ns, "ip", "link", "set", "br0", "up")
    _in(lab.bridge_ns, "ip", "link", "set", "lo", "up")
    _run("ip", "link", "add", lab.root_leg, "type", "veth", "peer", "name", f"{lab.root_leg}b")
    lab.links.append(lab.root_leg)
    _run("ip", "link", "set", f"{lab.root_leg}b", "netns", lab.bridge_ns)
    _in(lab.bridge_ns, "ip", "link", "set", f"{lab.root_leg}b", "master", "br0", "up")
    _run("ip", "addr", "add", f"{lab.root_address}/24", "dev", lab.root_leg)
    _run("ip", "link", "set", lab.root_leg, "up")
    for index in range(1, nodes + 1):
        ns, leg = f"dmsw{lab.tag}-n{index}", f"dmsw{lab.tag}v{index}"
        _run("ip", "netns", "add", ns)
        lab.namespaces.append(ns)
        _run("ip", "link", "add", leg, "type", "veth", "peer", "name", f"{leg}b")
        lab.links.append(leg)
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
            "--exec-opt native.cgroupdriver=cgroupfs",
            # Never the host's containerd namespace, whichever containerd it finds.
            f"--containerd-namespace dmsw{lab.tag}",
            f"--containerd-plugins-namespace dmsw{lab.tag}p",
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
    for node in lab.nodes:  # the containers of each engine (own network namespaces), by cgroup
        for group in _cgroups(node.name):
            for procs in group.rglob("cgroup.procs"):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
    for ns in lab.namespaces:  # whatever else still lives in the lab's namespaces
        for pid in _run("ip", "netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{run_root}/")), key=len, reverse=True):
        _run("umount", "-l", mount, check=False)
    time.sleep(0.2)  # (killed processes leave their cgroups)
    for node in lab.nodes:
        for group in _cgroups(node.name):
            for child in sorted(
                (p for p in group.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    child.rmdir()
            with contextlib.suppress(OSError):
                group.rmdir()
    for ns in reversed(lab.namespaces):
        _run("ip", "netns", "delete", ns, check=False)
    for link in lab.links:  # (most went with their namespace; the root leg did not)
        _run("ip", "link", "delete", link, check=False)
    shutil.rmtree(run_root, ignore_errors=True)


def _cgroups(name: str) -> list[Path]:
    """The folders of cgroup `name` under every v1 controller, or the v2 one."""
    base = Path("/sys/fs/cgroup")
    found = [base / name] if (base / name).is_dir() else []
    found += [controller / name for controller in base.iterdir() if (controller / name).is_dir()]
    return found
