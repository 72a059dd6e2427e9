"""SFTP uploads against a private sshd: the bytes by OpenSSH's sftp (pinned to the verified host
key, killed on cancel, progress from its file offset), asyncssh where the child cannot be used."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from docker_manager.adapters.sftp import SftpTarget, upload
from docker_manager.adapters.sftp import openssh as openssh_module
from docker_manager.adapters.sftp import transfer as upload_module
from docker_manager.adapters.sftp.openssh import CopyFailed, OpenSshCopier
from docker_manager.errors import UploadFailed
from tests.harness import Sshd, sshd


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with sshd(tmp_path_factory.mktemp("sshd")) as running:
        yield running


def target(server: Sshd, remote: Path, **extra: Any) -> SftpTarget:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": server.user,
        "remote_dir": str(remote),
        "key_file": server.key_file,
        "known_hosts": server.known_hosts,
        **extra,
    }
    return SftpTarget(**values)


def random_file(path: Path, mib: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(mib):
            block = os.urandom(1 << 20)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while block := src.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class CopySpy:
    """Counts the copies that went through OpenSSH's sftp (the real copy still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = OpenSshCopier.copy

        async def counted(copier: OpenSshCopier, *args: Any) -> None:
            self.calls += 1
            await real(copier, *args)

        monkeypatch.setattr(OpenSshCopier, "copy", counted)


async def test_openssh_copies_the_bytes_with_progress_and_no_half_file(
    server: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_module, "REPORT_INTERVAL", 0.05)
    monkeypatch.setattr(openssh_module, "PROGRESS_INTERVAL", 0.05)
    spy = CopySpy(monkeypatch)
    artefact = tmp_path / "app_v1.tar.lz4"
    digest = random_file(artefact, 160)
    events: list[tuple[str, int, int]] = []

    async def progress(name: str, done: int, total: int) -> None:
        events.append((name, done, total))

    remote = tmp_path / "remote"
    result = await upload(target(server, remote, client="openssh"), "task-1", [artefact], progress=progress)
    assert spy.calls == 1
    received = remote / "task-1" / artefact.name
    assert sha256(received) == digest and result.total_bytes == artefact.stat().st_size
    assert not list((remote / "task-1").glob("*.part"))
    size = artefact.stat().st_size
    assert events[-1] == (artefact.name, size, size)
    assert all(total == size and 0 <= done <= size for _, done, total in events)
    # The child's read offset, seen from /proc while it copies.
    assert any(0 < done < size for _, done, _ in events)


async def test_names_outside_the_safe_set_and_passwords_stay_on_asyncssh(
    server: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = CopySpy(monkeypatch)
    odd = tmp_path / "it's a [file].tar.lz4"
    digest = random_file(odd, 2)
    remote = tmp_path / "remote"
    await upload(target(server, remote), "task-2", [odd])
    assert spy.calls == 0 and sha256(remote / "task-2" / odd.name) == digest
    no_key = {"binary": "sftp", "host": "127.0.0.1", "port": server.port, "username": server.user}
    common = {"ciphers": upload_module.CIPHERS, "connect_timeout": 5, **no_key}
    # Decided before the connection is looked at: a password login never reaches the child.
    assert OpenSshCopier.for_connection(None, key_file=server.key_file, password="pw", **common) is None  # type: ignore[arg-type]
    assert OpenSshCopier.for_connection(None, key_file=None, password=None, **common) is None  # type: ignore[arg-type]
    for name in ("a b", "x\nput /etc/shadow y", "a*", 'a"b', "a\\b", "!sh"):
        assert not OpenSshCopier.can_copy(Path("/tmp") / name, "/srv/x.part")
    for name in ("-rf", "a b", "x\nput /etc/shadow y", "~root/x", "a*", "!sh"):
        assert not OpenSshCopier.can_copy(Path("/tmp/a"), name)
    assert OpenSshCopier.can_copy(Path("/tmp/-rf"), "uploads/task-1/app_v1.tar.lz4.part")
    assert not OpenSshCopier.can_copy(Path("relative/file"), "/srv/x.part")


async def test_the_child_trusts_only_the_host_key_the_session_verified(server: Sshd, tmp_path: Path) -> None:
    artefact = tmp_path / "a.tar.lz4"
    random_file(artefact, 1)
    other_key = " ".join(Path(f"{server.other_key_file}.pub").read_text().split()[:2])
    copier = OpenSshCopier(
        binary="sftp",
        host="127.0.0.1",
        port=server.port,
        username=server.user,
        key_file=server.key_file,
        host_key=other_key,  # not the server's
        ciphers=upload_module.CIPHERS,
        connect_timeout=5,
    )
    with pytest.raises(CopyFailed, match=r"(?i)host key"):
        await copier.copy(artefact, str(tmp_path / "never.part"), lambda _n: None)
    assert not (tmp_path / "never.part").exists()


async def test_a_cancelled_upload_kills_the_child_and_removes_the_half_file(
    server: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = CopySpy(monkeypatch)
    artefact = tmp_path / "big.tar.lz4"
    random_file(artefact, 400)
    remote = tmp_path / "remote"
    mine = psutil.Process()
    before = {child.pid for child in mine.children(recursive=True)}
    job = asyncio.create_task(upload(target(server, remote, client="openssh"), "task-3", [artefact]))
    for _ in range(200):
        await asyncio.sleep(0.02)
        if any(c.pid not in before and _name(c) == "sftp" for c in mine.children(recursive=True)):
            break
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert spy.calls == 1
    # The sftp client and its ssh are gone (the server's own session processes may linger a moment).
    left = [c for c in mine.children(recursive=True) if c.pid not in before and _name(c) in ("sftp", "ssh")]
    assert not [c for c in left if c.status() != psutil.STATUS_ZOMBIE], left
    assert not (remote / "task-3" / artefact.name).exists()
    assert not list((remote / "task-3").glob("*.part"))


def _name(process: psutil.Process) -> str:
    try:
        return str(process.name())
    except psutil.Error:
        return ""


async def test_openssh_required_but_missing_fails_clearly(
    server: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sftp on it
    artefact = tmp_path / "a.tar.lz4"
    random_file(artefact, 1)
    with pytest.raises(UploadFailed, match="no sftp program"):
        await upload(target(server, tmp_path / "remote", client="openssh"), "task-4", [artefact])
    await upload(target(server, tmp_path / "remote"), "task-5", [artefact])  # auto: asyncssh then
    assert (tmp_path / "remote" / "task-5" / artefact.name).is_file()


async def test_auto_goes_on_with_asyncssh_when_openssh_refuses(
    server: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenSSH refuses a private key that others can read; asyncssh takes it. `auto` finishes the
    upload with asyncssh, `openssh` fails it."""
    spy = CopySpy(monkeypatch)
    loose_key = tmp_path / "loose_key"
    loose_key.write_bytes(server.key_file.read_bytes())
    loose_key.chmod(0o644)
    artefact = tmp_path / "a.tar.lz4"
    digest = random_file(artefact, 2)
    remote = tmp_path / "remote"
    await upload(target(server, remote, key_file=loose_key), "task-6", [artefact])
    assert spy.calls == 1 and sha256(remote / "task-6" / artefact.name) == digest
    with pytest.raises(UploadFailed, match=r"(?s)sftp exited.*(UNPROTECTED|too open)"):
        await upload(
            target(server, remote, key_file=loose_key, client="openssh"), "task-7", [artefact], attempts=1
        )
    assert not (remote / "task-7" / artefact.name).exists()
    # A batch line sftp would split (it reads 2047 bytes at most) is never given to it.
    assert not OpenSshCopier.can_copy(Path("/tmp/a"), "x/" * 600 + "y.part")
