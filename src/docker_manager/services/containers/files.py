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

import base64
import binascii
import json
import posixpath
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from docker_manager.adapters.docker import Docker
from docker_manager.auth import Principal
from docker_manager.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from docker_manager.schemas.containers import (
    FsDeleteResult,
    FsEntry,
    FsListResult,
    FsMkdirResult,
    FsWriteResult,
)
from docker_manager.services.containers.archive import Archive
from docker_manager.services.containers.options import ContainerOptions
from docker_manager.services.containers.removal import Remover, kind_of, normalise
from docker_manager.services.containers.service import ContainerService
from docker_manager.util.tarbuild import dir_members, file_member, tar_bytes
from docker_manager.util.tarstream import TarEntry, TarReader


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
    def __init__(self, *, docker: Docker, containers: ContainerService, options: ContainerOptions) -> None:
        self._docker = docker
        self._containers = containers
        self._options = options
        self._archive = Archive(docker)
        self._remover = Remover(docker, self._archive, options.fs_helper_binary)

    async def delete_path(
        self, ref: str, principal: Principal, *, path: str, recursive: bool
    ) -> FsDeleteResult:
        data = await self._containers.owned(ref, principal)
        result = await self._remover.delete(data, normalise(path), recursive=recursive)
        return FsDeleteResult.model_validate(result)

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
        stat = await self._archive.stat(data.id, path)
        if not stat.is_dir:
            raise Conflict(f"{path} is not a directory ({kind_of(stat)})", field="path")
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
        stat = await self._archive.stat(data.id, path)
        if stat.is_dir:
            raise Conflict(f"{path} is a directory; list it instead", field="path")
        cap = self._options.fs_max_bytes
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
        stat = await self._archive.stat(data.id, path)
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
    ) -> FsWriteResult:
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
        if len(payload) > self._options.fs_max_bytes:
            raise PayloadTooLarge(f"content is over {self._options.fs_max_bytes} bytes", field="content")
        existing = await self._archive.stat_or_none(data.id, path)
        if existing is not None and existing.is_dir:
            raise Conflict(f"{path} is a directory", field="path")
        base, missing = await self._anchor(data.id, posixpath.dirname(path), parents=parents)
        tar = tar_bytes([*dir_members(missing), file_member(posixpath.relpath(path, base), payload, mode)])
        await self._archive.put(data.id, base, tar)
        written = await self._archive.stat(data.id, path)
        return FsWriteResult.model_validate(
            {
                "path": path,
                "written": True,
                "bytes": len(payload),
                "size": written.size,
                "mode": oct(written.mode & 0o7777),
                "created_dirs": missing,
            }
        )

    async def make_dir(self, ref: str, principal: Principal, *, path: str, parents: bool) -> FsMkdirResult:
        data = await self._containers.owned(ref, principal)
        path = normalise(path)
        existing = await self._archive.stat_or_none(data.id, path)
        if existing is not None:
            if existing.is_dir and parents:
                return FsMkdirResult.model_validate(
                    {"path": path, "exit_code": 0, "created": False, "created_dirs": []}
                )
            raise Conflict(f"{path} already exists", field="path")
        base, missing = await self._anchor(data.id, posixpath.dirname(path), parents=parents)
        created = [*missing, posixpath.relpath(path, base)]
        await self._archive.put(data.id, base, tar_bytes(dir_members(created)))
        return FsMkdirResult.model_validate(
            {"path": path, "exit_code": 0, "created": True, "created_dirs": created}
        )

    async def _anchor(self, container_id: str, directory: str, *, parents: bool) -> tuple[str, list[str]]:
        """The deepest existing ancestor of `directory` and the directories missing below it."""
        missing: list[str] = []
        current = directory
        while True:
            stat = await self._archive.stat_or_none(container_id, current)
            if stat is not None:
                if not stat.is_dir:
                    raise Conflict(f"{current} is not a directory", field="path")
                break
            missing.insert(0, current)
            current = posixpath.dirname(current)
        if missing and not parents:
            raise NotFound(f"{missing[0]} does not exist (set parents to create it)", field="path")
        return current, [posixpath.relpath(m, current) for m in missing]


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
