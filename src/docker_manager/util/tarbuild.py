"""Small uncompressed tar archives built in memory, for writing into containers.

Always uncompressed: a compressed body would make the engine run the container's own
decompressor as root on the host (CVE-2026-41567). Members are owned by root, and a file's mode
keeps its permission bits only (never setuid, setgid or sticky).
"""

from __future__ import annotations

import io
import tarfile
import time
from typing import Any


def dir_members(relative: list[str]) -> list[tarfile.TarInfo]:
    infos = []
    for name in relative:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.mtime = int(time.time())
        infos.append(info)
    return infos


def file_member(name: str, payload: bytes, mode: int) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = mode & 0o777  # never setuid, setgid or sticky from a request
    info.mtime = int(time.time())
    return info, payload


def tar_bytes(members: list[Any]) -> bytes:
    """An uncompressed tar, owned by root (uid/gid 0), built in memory (its size is capped)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info, payload = member if isinstance(member, tuple) else (member, None)
            info.uid = info.gid = 0
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buffer.getvalue()
