"""Shipping a built image: exported with its tag as lz4 into the task folder, then uploaded over SFTP.

The folder goes to `{remote_dir}/{task_id}/`: the artefact, `build.manifest.json` (name, size,
sha256, image id, tag) that localrun verifies it against, the Dockerfile files and the logs; then
`build.info.json`, last, complete.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from docker_manager.adapters.docker import Docker
from docker_manager.adapters.sftp import SftpTarget, Uploaded, upload
from docker_manager.errors import UploadFailed
from docker_manager.runner import TaskContext
from docker_manager.runner.files import (
    BUILD_JSONL,
    BUILD_LOG,
    DOCKERFILE_PARSED,
    DOCKERFILE_USED,
    ERROR_LOG,
    EVENTS_LOG,
    INFO_JSON,
    MANIFEST,
)
from docker_manager.services.builds.dockerfile import artefact_name
from docker_manager.services.builds.options import SftpOptions
from docker_manager.services.host.disk import DiskService
from docker_manager.util.lz4file import compress_to_file

# What goes to the runtime host besides the artefact; build.info.json travels last.
UPLOADED_FILES = (
    MANIFEST,
    DOCKERFILE_USED,
    DOCKERFILE_PARSED,
    BUILD_LOG,
    BUILD_JSONL,
    EVENTS_LOG,
    ERROR_LOG,
)


async def upload_folder(
    ctx: TaskContext, target: SftpTarget, summary: dict[str, Any], sftp: SftpOptions, disk: DiskService
) -> dict[str, Any]:
    """Ship the task folder to `{remote_dir}/{task_id}/`; build.info.json goes last, complete."""
    assert ctx.files is not None
    files = ctx.files
    artefact = Path(summary["compressed_image_path"])
    await files.write_json(
        MANIFEST,
        {
            "task_id": ctx.task_id,
            "artefact": artefact.name,
            "size": summary["compressed_image_size_bytes"],
            "sha256": summary["compressed_image_sha256"],
            "image_id": summary["image_id"],
            "tag": summary["tag"],
        },
    )
    remote = f"{target.remote_dir.rstrip('/')}/{ctx.task_id}"
    await ctx.merge_summary({"status": "building", "stage": "uploading"})
    await ctx.event(
        "uploading",
        "starting",
        message=f"SFTP transfer to {target.host}:{target.port}",
        remote_path=remote,
        **target.describe(),
    )

    async def progress(name: str, done: int, total: int) -> None:
        await ctx.event("uploading", "progress", file=name, bytes_done=done, bytes_total=total)

    await ctx.flush()
    names = [artefact.name, *UPLOADED_FILES]
    paths = [files.path(n) for n in names if await asyncio.to_thread(files.path(n).is_file)]
    try:
        first = await _send(sftp, target, ctx.task_id, paths, progress, disk)
        deployment: dict[str, Any] = {
            "status": "success",
            "remote_path": first.remote_path,
            "files_transferred": len(first.files) + 1,
            "total_size_bytes": first.total_bytes,
            **target.describe(),
        }
        await ctx.merge_summary({"status": "building", "stage": "uploading", "sftp_deployment": deployment})
        last = await _send(sftp, target, ctx.task_id, [files.path(INFO_JSON)], None, None)
    except UploadFailed as exc:
        await ctx.merge_summary(
            {"sftp_deployment": {"status": "error", "error": exc.detail, **target.describe()}}
        )
        raise
    deployment["total_size_bytes"] = first.total_bytes + last.total_bytes
    await ctx.merge_summary({"sftp_deployment": deployment})
    await ctx.event(
        "uploading", "completed", message=f"SFTP transfer done to {remote}", sftp_deployment=deployment
    )
    return deployment


async def _send(
    sftp: SftpOptions,
    target: SftpTarget,
    task_id: str,
    paths: list[Path],
    progress: Any,
    disk: DiskService | None,
) -> Uploaded:
    def check_space(path: str, needed: int, free: int, total: int) -> None:
        assert disk is not None
        disk.require_remote(path, needed, free=free, total=total, what="the upload")

    return await upload(
        target,
        task_id,
        paths,
        progress=progress,
        attempts=sftp.attempts,
        deadline=sftp.deadline,
        check_space=check_space if disk is not None else None,
    )


async def export_image(ctx: TaskContext, docker: Docker, tag: str, disk: DiskService) -> dict[str, Any]:
    """Save the image by its tag and lz4-compress it into the task folder, in one stream."""
    assert ctx.files is not None
    target = ctx.files.path(artefact_name(tag))
    # The image's size bounds the artefact's (lz4 only makes it smaller).
    size = int((await docker.images.inspect(tag)).get("Size") or 0)
    await disk.require(ctx.files.directory, size, what="exporting the image")
    await ctx.event("building", "exporting", message=f"exporting {tag} to {target.name}", tag=tag)
    started = time.monotonic()
    async with docker.images.export(tag) as chunks:
        compressed = await compress_to_file(chunks, target)
    fields: dict[str, Any] = {
        "compressed_image_path": str(compressed.path),
        "compressed_image_size_bytes": compressed.size,
        "compressed_image_sha256": compressed.sha256,
        "image_tar_size_bytes": compressed.raw_size,
    }
    await ctx.event(
        "building",
        "exported",
        message=f"image exported and compressed size={compressed.size} bytes",
        duration_sec=round(time.monotonic() - started, 3),
        compression_ratio_percent=round(compressed.size / max(compressed.raw_size, 1) * 100, 1),
        **fields,
    )
    return fields
