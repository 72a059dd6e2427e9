"""Bodies and answers of `/docker/container/fs/*`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from docker_manager.schemas.common import ContainerRef, ResponseModel, StrictModel

ContainerPathField = Field(max_length=4096, description="Absolute path inside the container.")


class FsListRequest(StrictModel):
    id_or_name: ContainerRef
    path: str = ContainerPathField
    limit: int = Field(1000, ge=1, le=10_000)
    cursor: str | None = Field(None, max_length=4096, description="`next_cursor` of the previous page.")


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
    parents: bool = Field(False, description="Create missing parents; an existing directory is fine.")


class FsDeleteRequest(StrictModel):
    id_or_name: ContainerRef
    path: str = ContainerPathField
    recursive: bool = Field(False, description="Needed to delete a directory and what it holds.")


class FsEntry(ResponseModel):
    name: str
    type: Literal["file", "directory", "symlink", "hardlink", "char_device", "block_device", "fifo", "other"]
    size: int
    mode: str
    permissions: str
    mtime: float
    link_target: str | None = None
    uid: int = 0
    gid: int = 0


class FsListResult(ResponseModel):
    path: str
    entries: list[FsEntry]
    next_cursor: str | None


class FsReadResult(ResponseModel):
    path: str
    size: int = Field(description="Size of the whole file.")
    offset: int
    length: int = Field(description="Bytes returned.")
    encoding: Literal["utf-8", "base64"]
    content: str
    truncated: bool = Field(description="True when the file goes on past what was returned.")


class FsWriteResult(ResponseModel):
    path: str
    size: int
    mode: str
    created_dirs: list[str]


class FsMkdirResult(ResponseModel):
    path: str
    created: bool
    created_dirs: list[str]


class FsDeleteResult(ResponseModel):
    path: str
    deleted: bool
    type: str
