"""The bytes of an upload copied by OpenSSH's own `sftp` client, pinned to the host key that the
asyncssh connection verified.

asyncssh builds and encrypts every 32 KiB packet in Python: about 0.8x of scp on loopback
(py-spy: socket writes, AES-GCM and packet building, no single hot spot). OpenSSH's `sftp` speaks
the same protocol in C. Everything else stays on the asyncssh connection (authentication errors,
free space, directories, the atomic rename, removing a half file); only the copy runs in this
child process, in its own session so it can be killed whole.

Used for key logins only: a password would have to reach the child through its environment and
an askpass helper, so password logins stay on asyncssh. Paths, user and host go on an argv and in
one `put` line of a batch read from stdin; anything outside a conservative character set (quotes,
spaces, globs, a leading dash) is left to asyncssh rather than escaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

# What may appear in a path, user or host given to the child: no quotes, spaces, glob characters,
# tildes, backslashes or newlines, so the batch line needs no escaping at all.
_SAFE_PATH = re.compile(r"/?[A-Za-z0-9._@+=,][A-Za-z0-9._/@+=,:-]*")
_SAFE_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,63}")
_SAFE_HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")
_STDERR_KEPT = 4096
MAX_BATCH_LINE = 1024
PROGRESS_INTERVAL = 1.0


class CopyFailed(OSError):
    """The child copy ended badly: an OSError, so the upload's retries treat it as transient."""


@dataclass(frozen=True)
class OpenSshCopier:
    binary: str
    host: str
    port: int
    username: str
    key_file: Path
    host_key: str  # "ssh-ed25519 AAAA...": the key the asyncssh connection verified
    ciphers: Sequence[str]
    connect_timeout: float

    @classmethod
    def for_connection(
        cls,
        conn: asyncssh.SSHClientConnection,
        *,
        binary: str,
        host: str,
        port: int,
        username: str,
        key_file: Path | None,
        password: str | None,
        ciphers: Sequence[str],
        connect_timeout: float,
    ) -> OpenSshCopier | None:
        """A copier for this target, or None when the copy must stay on asyncssh."""
        if password is not None or key_file is None:
            return None
        if not (_SAFE_USER.fullmatch(username) and _SAFE_HOST.fullmatch(host) and not host.startswith("-")):
            return None
        key = conn.get_server_host_key()
        if not isinstance(key, asyncssh.SSHKey):  # a certificate: known_hosts would need a CA line
            return None
        host_key = " ".join(key.export_public_key("openssh").decode("ascii").split()[:2])
        return cls(binary, host, port, username, key_file, host_key, tuple(ciphers), connect_timeout)

    @staticmethod
    def can_copy(local: Path, remote: str) -> bool:
        # sftp reads its batch in lines of at most 2047 bytes: a longer one would be split in two.
        return bool(
            _SAFE_PATH.fullmatch(str(local))
            and local.is_absolute()
            and _SAFE_PATH.fullmatch(remote)
            and len(_batch_line(local, remote)) < MAX_BATCH_LINE
        )

    async def copy(self, local: Path, remote: str, on_copied: Callable[[int], None]) -> None:
        """Copy `local` to `remote` (replacing it); `on_copied(bytes)` as the copy goes on."""
        # Named here, made in the try: a cancel while it is being made still removes it.
        folder = Path(tempfile.gettempdir()) / f"dm-sftp-{secrets.token_hex(8)}"
        try:
            await asyncio.to_thread(folder.mkdir, mode=0o700)
            known_hosts = folder / "known_hosts"
            name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
            await asyncio.to_thread(known_hosts.write_text, f"{name} {self.host_key}\n")
            await self._run(known_hosts, local, remote, on_copied)
        finally:
            await asyncio.shield(asyncio.to_thread(_remove_folder, folder))

    def _argv(self, known_hosts: Path) -> list[str]:
        options = {
            "BatchMode": "yes",
            "LogLevel": "ERROR",  # errors (a host key refused) on stderr, for the task's message
            "IdentitiesOnly": "yes",
            "IdentityAgent": "none",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "UserKnownHostsFile": str(known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes",
            "UpdateHostKeys": "no",
            "ConnectTimeout": str(max(int(self.connect_timeout), 1)),
            "ServerAliveInterval": "15",
            "ServerAliveCountMax": "3",
            "User": self.username,
        }
        argv = [self.binary, "-b", "-", "-F", "/dev/null", "-P", str(self.port)]
        argv += ["-i", str(self.key_file), "-c", ",".join(self.ciphers)]
        for key, value in options.items():
            argv += ["-o", f"{key}={value}"]
        destination = f"[{self.host}]" if ":" in self.host else self.host
        return [*argv, "--", destination]

    async def _run(
        self, known_hosts: Path, local: Path, remote: str, on_copied: Callable[[int], None]
    ) -> None:
        process = await asyncio.create_subprocess_exec(
            *self._argv(known_hosts),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # the sftp client and its ssh child: killed together
            # Not the service's environment (tokens, database URL): what ssh needs to run.
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": os.environ.get("HOME", "/"),
                "LANG": "C",
            },
        )
        watcher = asyncio.create_task(_watch_progress(process.pid, local, on_copied))
        try:
            _, stderr = await process.communicate(_batch_line(local, remote))
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise
        finally:
            watcher.cancel()
            await asyncio.wait([watcher])  # (a cancel aimed at this task is not swallowed here)
        if process.returncode != 0:
            message = stderr[-_STDERR_KEPT:].decode("utf-8", "replace").strip() or "no message"
            raise CopyFailed(f"sftp exited with {process.returncode}: {message}")


async def _watch_progress(pid: int, local: Path, on_copied: Callable[[int], None]) -> None:
    """How far the child has read the file: its descriptor's offset (Linux /proc), every second.
    It reads ahead of what the server has acknowledged by at most its requests in flight."""
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL)
        offset = await asyncio.to_thread(_read_offset, pid, str(local))
        if offset is not None:
            on_copied(offset)


def _read_offset(pid: int, path: str) -> int | None:
    fds = Path(f"/proc/{pid}/fd")
    try:
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == path:
                    for line in (Path(f"/proc/{pid}/fdinfo") / fd.name).read_text().splitlines():
                        if line.startswith("pos:"):
                            return int(line.split()[1])
    except OSError:
        return None
    return None


def _batch_line(local: Path, remote: str) -> bytes:
    return f"put {local} {remote}\n".encode()


def _remove_folder(folder: Path) -> None:
    if not folder.is_dir() or folder.is_symlink():
        return
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()
