"""Bodies and answers of `/docker/container/fs/*`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from docker_manager.schemas.common import ContainerRef, ResponseModel, StrictModel

ContainerPathField = Field(max_length=4096, description="Absolute path inside the container.")


class FsListRequest(StrictModel):
    id_or_name: ContainerRef
    path: str = ContainerPathField
    limit: int = Field(1000, ge=1, le=10_000)
    cursor: str | None = Field(None, max_length=4096, description="`next_cursor` of the previous page.")
    recursive: bool = Field(
        False, description="Everything below `path` (names relative to it); default: one level."
    )


class FsReadRequest(StrictModel):
    id_or_name: ContainerRef
    path: str = ContainerPathField
    offset: int = Field(0, ge=0, description="First byte to read.")
    length: int | None = Field(None, ge=0, description="Bytes to read (default: to the end).")


class FsWriteRequest(StrictModel):
    id_or_name: ContainerRef
    path: str = ContainerPathField
    content: str = Field(
        max_length=64 << 20, description="The file's content: text, or base64 when `base64` is true."
    )
    base64: bool = False
    mode: int = Field(0o644, ge=0, le=0o777, description="Permission bits (setuid and friends are refused).")
    parents: bool = Field(False, description="Create missing parent directories.")


class FsMkdirRequest(StrictModel):
    id_or_name: ContainerRef
    path: str = ContainerPathField
    parents: bool = Field(
        True,
        description="As `mkdir -p` (the original): create missing parents; an existing directory is fine.",
    )


class FsDeleteRequest(StrictModel):
    id_or_name: ContainerRef
    path: str = ContainerPathField
    recursive: bool = Field(
        True, description="As `rm -rf` (the original): a directory goes with its content; false refuses it."
    )


PathStatFields = dict[str, Any]


class FsEntry(ResponseModel):
    name: str = Field(description="Path relative to the listed directory.")
    path: str = Field(description="Absolute path in the container.")
    type: Literal["dir", "file"] = Field(description="The original's two kinds: dir, or file for the rest.")
    kind: Literal["file", "directory", "symlink", "hardlink", "char_device", "block_device", "fifo", "other"]
    size: int
    mode: int = Field(description="Permission bits as an integer (0o644 is 420).")
    mode_octal: str
    permissions: str
    mtime: float
    link_target: str | None = None
    uid: int = 0
    gid: int = 0


class FsListResult(ResponseModel):
    path: str
    entries: list[FsEntry]
    next_cursor: str | None
    stat: PathStatFields = Field(
        description="The engine's stat of `path`: name, size, mode, mtime, linkTarget."
    )


class FsReadResult(ResponseModel):
    path: str
    size: int = Field(description="Size of the whole file.")
    offset: int
    length: int = Field(description="Bytes returned.")
    encoding: Literal["utf-8", "base64"]
    content: str = Field(description="The bytes as text when they are UTF-8, else base64.")
    text: str | None = Field(description="The bytes as UTF-8 text, or null (the original's field).")
    base64: str = Field(description="The bytes in base64, always (the original's field).")
    truncated: bool = Field(description="True when the file goes on past what was returned.")
    stat: PathStatFields


class FsWriteResult(ResponseModel):
    path: str
    written: bool
    bytes: int = Field(description="Bytes written.")
    size: int
    mode: str
    created_dirs: list[str]


class FsMkdirResult(ResponseModel):
    path: str
    exit_code: int = Field(description="0, as `mkdir -p` answered in the original.")
    created: bool
    created_dirs: list[str]


class FsDeleteResult(ResponseModel):
    path: str
    exit_code: int = Field(description="0 when the path is gone (or was never there), as `rm -rf`.")
    deleted: bool = Field(description="False when there was nothing to delete.")
    type: str | None
    helper: bool = Field(False, description="True when the image had no rm and a helper did the work.")
