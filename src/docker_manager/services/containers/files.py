"""Files inside containers, through the engine's archive API (works without a shell in the image).

- list: the entries of one directory, read from the archive stream's headers (contents are
  skipped, nothing is extracted on the host); the walk is in name order, so a page stops reading
  as soon as it is full.
- read: HEAD first (size cap before any byte is read), then the file's bytes from the stream.
- write / mkdir: a small uncompressed tar built here and PUT into the parent directory.
- delete: the container's own `rm`, run with an argv list; refused for /, /proc, /sys, /dev and
  anything that is, holds or lies inside a bind mount of the host.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import posixpath
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from docker_manager.auth import Principal
from docker_manager.config import Settings
from docker_manager.docker import Docker, StreamId
from docker_manager.docker.containers import PathStat
from docker_manager.errors import Conflict, EngineError, InvalidInput, NotFound, PayloadTooLarge, Unsupported
from docker_manager.schemas.container_fs import FsEntry, FsListResult
from docker_manager.services.containers.service import ContainerService
from docker_manager.util.tarbuild import dir_members, file_member, tar_bytes
from docker_manager.util.tarstream import TarEntry, TarReader

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


def _kind(stat: PathStat) -> str:
    if stat.is_dir:
        return "directory"
    if stat.is_symlink:
        return "symlink"
    return "file" if stat.is_regular else "other"


@dataclass
class FileContent:
    """A file's bytes as read; `as_json()` renders the API's answer without extra copies."""

    path: str
    size: int
    offset: int
    data: bytes
    encoding: str
    truncated: bool
    stat: dict[str, Any]

    def as_json(self) -> bytes:
        head = {
            "path": self.path,
            "size": self.size,
            "offset": self.offset,
            "length": len(self.data),
            "encoding": self.encoding,
            "truncated": self.truncated,
            "stat": self.stat,
        }
        encoded = b'"' + base64.b64encode(self.data) + b'"'
        if self.encoding == "base64":
            content, text = encoded, b"null"
        else:
            content = text = json.dumps(self.data.decode("utf-8"), ensure_ascii=False).encode("utf-8")
        # `text` and `base64` are the original's fields, beside `content` and `encoding`.
        return (
            json.dumps(head).encode()[:-1]
            + b', "content": '
            + content
            + b', "text": '
            + text
            + b', "base64": '
            + encoded
            + b"}"
        )


@dataclass
class _Page:
    entries: list[FsEntry]
    more: bool


class ContainerFiles:
    def __init__(self, docker: Docker, containers: ContainerService, settings: Settings) -> None:
        self._docker = docker
        self._containers = containers
        self._settings = settings
        self._helper: bytes | None = None

    async def _stat(self, container_id: str, path: str) -> PathStat:
        found = await self._stat_or_none(container_id, path)
        if found is None:
            raise NotFound(f"{path} does not exist in the container", field="path")
        return found

    async def _stat_or_none(self, container_id: str, path: str) -> PathStat | None:
        try:
            return await self._docker.containers.stat_path(container_id, path)
        except NotFound:
            return None
        except EngineError as exc:
            # The engine answers a bare 500 when a parent is a file ("not a directory").
            raise Conflict(f"{path} cannot be reached: a parent is not a directory", field="path") from exc

    # --- list ----------------------------------------------------------------------------------
    async def list_dir(
        self,
        ref: str,
        principal: Principal,
        *,
        path: str,
        limit: int,
        cursor: str | None,
        recursive: bool = False,
    ) -> FsListResult:
        data = await self._containers.owned(ref, principal)
        path = normalise(path)
        stat = await self._stat(data.id, path)
        if not stat.is_dir:
            raise Conflict(f"{path} is not a directory ({_kind(stat)})", field="path")
        page = await self._page(data.id, path, limit=limit, after=cursor, recursive=recursive)
        return FsListResult(
            path=path,
            entries=page.entries,
            next_cursor=page.entries[-1].name if page.more and page.entries else None,
            stat=stat.as_dict(),
        )

    async def _page(
        self, container_id: str, path: str, *, limit: int, after: str | None, recursive: bool
    ) -> _Page:
        """Read archive headers until `limit` entries (sorted, after `after`) are known: the direct
        children, or with `recursive` everything below, named by their path relative to `path`."""
        entries: list[FsEntry] = []
        # The engine walks each directory in name order, depth first: the order of the names'
        # component lists. Pages follow that order, so a page stops the walk as soon as it is full.
        after_key = after.split("/") if after is not None else None
        async with self._docker.containers.get_archive(container_id, path) as chunks:
            async for entry, _ in TarReader(chunks).entries():
                # Members are "<dir name>/<relative path>"; the first is the directory itself.
                _, _, relative = entry.name.rstrip("/").partition("/")
                if not relative or (not recursive and "/" in relative):
                    continue
                if after_key is not None and relative.split("/") <= after_key:
                    continue
                if len(entries) == limit:
                    return _Page(entries, more=True)  # leaving the block closes the stream early
                entries.append(_entry(path, relative, entry))
        entries.sort(key=lambda e: e.name.split("/"))
        return _Page(entries, more=False)

    # --- read ----------------------------------------------------------------------------------
    async def read_file(
        self, ref: str, principal: Principal, *, path: str, offset: int, length: int | None
    ) -> FileContent:
        data = await self._containers.owned(ref, principal)
        path = normalise(path)
        stat = await self._stat(data.id, path)
        if stat.is_dir:
            raise Conflict(f"{path} is a directory; list it instead", field="path")
        cap = self._settings.fs_max_bytes
        wanted = max(stat.size - offset, 0) if length is None else min(length, max(stat.size - offset, 0))
        if wanted > cap:
            raise PayloadTooLarge(
                f"{path} is {stat.size} bytes; read at most {cap} at a time (use offset and length)",
                field="length",
                size=stat.size,
            )
        pieces: list[bytes] = []
        async with self._docker.containers.get_archive(data.id, path) as chunks:
            async for entry, body in TarReader(chunks).entries():
                if entry.type == "symlink":
                    raise Conflict(f"{path} is a symbolic link to {entry.link_target}", field="path")
                await body.skip(offset)
                pieces.extend([piece async for piece in body.chunks(wanted)])
                break
        raw = b"".join(pieces)
        del pieces
        try:
            raw.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "base64"
        return FileContent(
            path=path,
            size=stat.size,
            offset=offset,
            data=raw,
            encoding=encoding,
            truncated=offset + len(raw) < stat.size,
            stat=stat.as_dict(),
        )

    async def stream_file(
        self, ref: str, principal: Principal, *, path: str, offset: int, length: int | None
    ) -> tuple[int, AsyncIterator[bytes]]:
        """The raw bytes of a file (or a range), streamed: no size cap, memory stays flat."""
        data = await self._containers.owned(ref, principal)
        path = normalise(path)
        stat = await self._stat(data.id, path)
        if not stat.is_regular:
            raise Conflict(f"{path} is not a regular file", field="path")
        available = max(stat.size - offset, 0)
        wanted = available if length is None else min(length, available)

        async def body() -> AsyncIterator[bytes]:
            async with self._docker.containers.get_archive(data.id, path) as chunks:
                async for _, member in TarReader(chunks).entries():
                    await member.skip(offset)
                    async for piece in member.chunks(wanted):
                        yield piece
                    return

        return wanted, body()

    # --- write / mkdir ---------------------------------------------------------------------------
    async def write_file(
        self,
        ref: str,
        principal: Principal,
        *,
        path: str,
        content: str,
        is_base64: bool,
        mode: int,
        parents: bool,
    ) -> dict[str, Any]:
        data = await self._containers.owned(ref, principal)
        path = normalise(path)
        if path == "/":
            raise InvalidInput("cannot write to /", field="path")
        if is_base64:
            try:
                payload = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidInput("content is not valid base64", field="content") from exc
        else:
            payload = content.encode("utf-8")
        if len(payload) > self._settings.fs_max_bytes:
            raise PayloadTooLarge(f"content is over {self._settings.fs_max_bytes} bytes", field="content")
        existing = await self._stat_or_none(data.id, path)
        if existing is not None and existing.is_dir:
            raise Conflict(f"{path} is a directory", field="path")
        base, missing = await self._anchor(data.id, posixpath.dirname(path), parents=parents)
        tar = tar_bytes([*dir_members(missing), file_member(posixpath.relpath(path, base), payload, mode)])
        await self._put(data.id, base, tar)
        written = await self._stat(data.id, path)
        return {
            "path": path,
            "written": True,
            "bytes": len(payload),
            "size": written.size,
            "mode": oct(written.mode & 0o7777),
            "created_dirs": missing,
        }

    async def make_dir(self, ref: str, principal: Principal, *, path: str, parents: bool) -> dict[str, Any]:
        data = await self._containers.owned(ref, principal)
        path = normalise(path)
        existing = await self._stat_or_none(data.id, path)
        if existing is not None:
            if existing.is_dir and parents:
                return {"path": path, "exit_code": 0, "created": False, "created_dirs": []}
            raise Conflict(f"{path} already exists", field="path")
        base, missing = await self._anchor(data.id, posixpath.dirname(path), parents=parents)
        created = [*missing, posixpath.relpath(path, base)]
        await self._put(data.id, base, tar_bytes(dir_members(created)))
        return {"path": path, "exit_code": 0, "created": True, "created_dirs": created}

    async def _anchor(self, container_id: str, directory: str, *, parents: bool) -> tuple[str, list[str]]:
        """The deepest existing ancestor of `directory` and the directories missing below it."""
        missing: list[str] = []
        current = directory
        while True:
            stat = await self._stat_or_none(container_id, current)
            if stat is not None:
                if not stat.is_dir:
                    raise Conflict(f"{current} is not a directory", field="path")
                break
            missing.insert(0, current)
            current = posixpath.dirname(current)
        if missing and not parents:
            raise NotFound(f"{missing[0]} does not exist (set parents to create it)", field="path")
        return current, [posixpath.relpath(m, current) for m in missing]

    async def _put(self, container_id: str, directory: str, tar: bytes) -> None:
        try:
            await self._docker.containers.put_archive(container_id, directory, tar)
        except EngineError as exc:
            if "read-only" in exc.detail or "permission denied" in exc.detail.lower():
                raise Conflict(f"the container refused the write: {exc.detail}", field="path") from exc
            raise

    # --- delete ------------------------------------------------------------------------------------
    async def delete_path(
        self, ref: str, principal: Principal, *, path: str, recursive: bool
    ) -> dict[str, Any]:
        data = await self._containers.owned(ref, principal)
        path = normalise(path)
        _refuse_protected(path, data.mounts)
        stat = await self._stat_or_none(data.id, path)
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
        if await self._stat_or_none(data.id, path) is not None:
            raise Conflict(f"rm could not delete {path}: {stderr.strip() or f'exit code {exit_code}'}")
        return {"path": path, "exit_code": 0, "deleted": True, "type": _kind(stat), "helper": helper}

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
            await self._put(container_id, directory, tar_bytes(members))
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
            path = self._settings.fs_helper_binary
            try:
                self._helper = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                raise Unsupported(
                    f"this image has no rm, and the helper {path} is missing (install busybox-static)"
                ) from exc
        return self._helper

    async def _is_dir(self, container_id: str, path: str) -> bool:
        stat = await self._stat_or_none(container_id, path)
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


def _entry(parent: str, relative: str, entry: TarEntry) -> FsEntry:
    return FsEntry(
        name=relative,
        path=posixpath.join(parent, relative),
        # The original's two types; `kind` tells them all apart.
        type="dir" if entry.type == "directory" else "file",
        kind=entry.type,
        size=entry.size if entry.type == "file" else 0,
        mode=entry.mode & 0o7777,
        mode_octal=oct(entry.mode & 0o7777),
        permissions=entry.permissions,
        mtime=entry.mtime,
        link_target=entry.link_target if entry.type in ("symlink", "hardlink") else None,
        uid=entry.uid,
        gid=entry.gid,
    )


def _refuse_protected(path: str, mounts: list[dict[str, Any]]) -> None:
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
