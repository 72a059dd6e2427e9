"""Deleting inside a container: its own `rm`, or for an image without one a static busybox
copied in through the archive API, run inside it, and removed again. Refused either way: `/`,
`/proc`, `/sys`, `/dev`, mounts and what holds them, and anything in a bind mount of the host."""

from __future__ import annotations

import asyncio
import posixpath
import secrets
from pathlib import Path
from typing import Any

from docker_manager.adapters.docker import ContainerInfo, Docker, StreamId
from docker_manager.adapters.docker.containers import PathStat
from docker_manager.errors import Conflict, EngineError, InvalidInput, Unsupported
from docker_manager.services.containers.archive import Archive
from docker_manager.util.tarbuild import dir_members, file_member, tar_bytes

PROTECTED = ("/", "/proc", "/sys", "/dev")
RM_MISSING = (126, 127)
CONTAINER_TMP = "/tmp"  # noqa: S108 (inside the container, under a random name)


def normalise(path: str) -> str:
    """An absolute, normalised container path (`..` and `.` folded lexically)."""
    if not path.startswith("/"):
        raise InvalidInput("the path must be absolute", field="path")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise InvalidInput("the path contains a NUL byte or a control character", field="path")
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/")  # normpath keeps a leading "//"


def kind_of(stat: PathStat) -> str:
    if stat.is_dir:
        return "directory"
    if stat.is_symlink:
        return "symlink"
    return "file" if stat.is_regular else "other"


class Remover:
    def __init__(self, docker: Docker, archive: Archive, helper_binary: Path) -> None:
        self._docker = docker
        self._archive = archive
        self._helper_path = helper_binary  # a static busybox, for containers without `rm`
        self._helper: bytes | None = None

    async def delete(self, data: ContainerInfo, path: str, *, recursive: bool) -> dict[str, Any]:
        """`rm -rf` (or `-f`) of a normalised path in a running container, with every refusal."""
        refuse_protected(path, data.mounts)
        stat = await self._archive.stat_or_none(data.id, path)
        if stat is None:  # as `rm -rf` in the original: nothing there is success
            return {"path": path, "exit_code": 0, "deleted": False, "type": None}
        if stat.is_dir and not recursive:
            raise Conflict(
                f"{path} is a directory; set recursive to delete it and its contents", field="path"
            )
        if not data.running:
            raise Conflict("the container is not running: deleting runs rm inside it")
        flags = "-rf" if recursive else "-f"
        exit_code, stderr = await self._run(data.id, ["rm", flags, "--", path])
        helper = exit_code in RM_MISSING or "executable file not found" in stderr
        if helper:
            exit_code, stderr = await self._rm_with_helper(data.id, [flags, "--", path])
        if await self._archive.stat_or_none(data.id, path) is not None:
            raise Conflict(f"rm could not delete {path}: {stderr.strip() or f'exit code {exit_code}'}")
        return {"path": path, "exit_code": 0, "deleted": True, "type": kind_of(stat), "helper": helper}

    async def _rm_with_helper(self, container_id: str, args: list[str]) -> tuple[int | None, str]:
        """`rm` for an image that has none: a static busybox is copied in through the archive API,
        run as `busybox rm ...` (an argv, inside the container, so symlinks resolve in its own root),
        and removed again."""
        binary = await self._helper_binary()
        # busybox picks its applet from argv[0] unless that is named "busybox": a private folder.
        folder = f".dm-rm-{secrets.token_hex(6)}"
        directory = CONTAINER_TMP if await self._is_dir(container_id, CONTAINER_TMP) else "/"
        helper = posixpath.join(directory, folder, "busybox")
        members = [*dir_members([folder]), file_member(f"{folder}/busybox", binary, 0o700)]
        try:
            await self._archive.put(container_id, directory, tar_bytes(members))
        except Conflict as exc:
            raise Unsupported(
                f"this image has no rm, and no helper could be copied in: {exc.detail}"
            ) from exc
        try:
            exit_code, stderr = await self._run(container_id, [helper, "rm", *args])
            if exit_code is None:
                raise Unsupported(f"this image has no rm, and the helper could not run: {stderr.strip()}")
            return exit_code, stderr
        finally:
            await self._run(container_id, [helper, "rm", "-rf", "--", posixpath.dirname(helper)])

    async def _helper_binary(self) -> bytes:
        if self._helper is None:
            path = self._helper_path
            try:
                self._helper = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                raise Unsupported(
                    f"this image has no rm, and the helper {path} is missing (install busybox-static)"
                ) from exc
        return self._helper

    async def _is_dir(self, container_id: str, path: str) -> bool:
        stat = await self._archive.stat_or_none(container_id, path)
        return stat is not None and stat.is_dir

    async def _run(self, container_id: str, argv: list[str]) -> tuple[int | None, str]:
        try:
            exec_id = await self._docker.execs.create(container_id, argv)
        except EngineError as exc:
            return None, exc.detail
        stderr = bytearray()
        try:
            async with self._docker.execs.start(exec_id) as frames:
                async for stream_id, payload in frames:
                    if stream_id == StreamId.STDERR and len(stderr) < 65536:
                        stderr += payload
        except EngineError as exc:
            return None, exc.detail
        info = await self._docker.execs.inspect(exec_id)
        code = info.get("ExitCode")
        return (int(code) if code is not None else None), stderr.decode("utf-8", "replace")


def refuse_protected(path: str, mounts: list[dict[str, Any]]) -> None:
    for root in PROTECTED:
        if path == root or (root != "/" and path.startswith(root + "/")):
            raise InvalidInput(f"refusing to delete {path}: {root} is protected", field="path")
    for mount in mounts:
        destination = normalise(str(mount.get("Destination", "/")))
        if path == destination or destination.startswith(path.rstrip("/") + "/"):
            raise InvalidInput(
                f"refusing to delete {path}: a mount ({destination}) is at or below it", field="path"
            )
        if mount.get("Type") == "bind" and path.startswith(destination + "/"):
            raise InvalidInput(
                f"refusing to delete {path}: it lies in a bind mount of the host ({destination})",
                field="path",
            )
