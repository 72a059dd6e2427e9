"""Disk space: what the roots and the engine use (`/system/disk`), and the pre-flight check that
refuses an operation before it starts when it would leave less than `DM_MIN_FREE_BYTES` free."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from docker_manager.adapters.docker import Docker
from docker_manager.errors import InsufficientStorage
from docker_manager.schemas.host import DiskReport, EngineUsage, FilesystemUsage
from docker_manager.services.host.options import HostOptions
from docker_manager.util.cache import SingleFlightCache

DEFAULT_MIN_FREE = 2 << 30  # 2 GiB, or 5 % of the filesystem when that is less
DEFAULT_MIN_FREE_SHARE = 0.05


class DiskService:
    def __init__(self, docker: Docker, options: HostOptions) -> None:
        self._docker = docker
        self._options = options
        self._engine_root: Path | None = None
        # The engine sizes every volume and layer for /system/df (seconds on a big host): one
        # call per 30 s at most, shared by every reader.
        self._df: SingleFlightCache[dict[str, Any]] = SingleFlightCache(ttl=30.0)

    def min_free(self, total: int) -> int:
        if self._options.min_free_bytes is not None:
            return self._options.min_free_bytes
        return min(DEFAULT_MIN_FREE, int(total * DEFAULT_MIN_FREE_SHARE))

    @property
    def known_engine_root(self) -> Path | None:
        """The engine's root if it was looked up already (no engine call)."""
        return self._engine_root

    async def engine_root(self) -> Path | None:
        """The engine's data root (DockerRootDir), when it is on this host's filesystem."""
        if self._engine_root is None:
            root = (await self._docker.system.info()).get("DockerRootDir")
            if root and await asyncio.to_thread(Path(root).is_dir):
                self._engine_root = Path(root)
        return self._engine_root

    async def require(self, path: Path, needed: int, *, what: str) -> None:
        """Refuse (507 insufficient_storage) when writing `needed` bytes under `path` would leave
        less than the minimum free."""
        usage = await asyncio.to_thread(_usage_of, path)
        if usage is None:
            return
        total, free = usage
        if free - needed < self.min_free(total):
            raise InsufficientStorage(
                f"{what} needs {needed} bytes in {path}, which has {free} free "
                f"(at least {self.min_free(total)} must stay free)",
                path=str(path),
                needed_bytes=needed,
                free_bytes=free,
                reason="insufficient_storage",
            )

    async def require_engine(self, needed: int, *, what: str) -> None:
        root = await self.engine_root()
        if root is not None:
            await self.require(root, needed, what=what)

    def require_remote(self, path: str, needed: int, *, free: int, total: int, what: str) -> None:
        """The same rule for a remote filesystem (SFTP statvfs)."""
        if free - needed < self.min_free(total):
            raise InsufficientStorage(
                f"{what} needs {needed} bytes on the SFTP server's {path}, which has {free} free",
                path=path,
                needed_bytes=needed,
                free_bytes=free,
                reason="insufficient_storage",
            )

    async def report(self) -> DiskReport:
        df = await self._df.get("df", self._docker.system.df)
        return DiskReport(filesystems=await self.filesystems(), engine=engine_usage(df))

    async def filesystems(self) -> list[FilesystemUsage]:
        """Total, used and free space of the data, builds, upload and engine roots."""
        roots = [
            ("data", self._options.roots.data_dir),
            ("builds", self._options.roots.builds_path),
            ("upload", self._options.roots.upload_path),
        ]
        engine_root = await self.engine_root()
        if engine_root is not None:
            roots.append(("engine", engine_root))
        filesystems = []
        for name, path in roots:
            usage = await asyncio.to_thread(shutil.disk_usage, path)
            filesystems.append(
                FilesystemUsage(
                    name=name,
                    path=str(path),
                    total_bytes=usage.total,
                    used_bytes=usage.used,
                    free_bytes=usage.free,
                    min_free_bytes=self.min_free(usage.total),
                )
            )
        return filesystems


def _usage_of(path: Path) -> tuple[int, int] | None:
    """(total, free) of the filesystem holding `path` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        try:
            usage = shutil.disk_usage(candidate)
        except OSError:
            continue
        return usage.total, usage.free
    return None


def engine_usage(df: dict[str, Any]) -> dict[str, EngineUsage]:
    """`docker system df`'s four lines, computed as the docker CLI does."""
    images = df.get("Images") or []
    used_by_containers = sum(
        int(i.get("Size", 0)) - int(i.get("SharedSize", 0))
        for i in images
        if i.get("Containers") and int(i.get("Size", -1)) >= 0 and int(i.get("SharedSize", -1)) >= 0
    )
    layers = int(df.get("LayersSize") or 0)
    containers = df.get("Containers") or []
    volumes = [v for v in df.get("Volumes") or [] if int((v.get("UsageData") or {}).get("Size", -1)) >= 0]
    cache = [c for c in df.get("BuildCache") or [] if not c.get("Shared")]
    return {
        "images": EngineUsage(
            count=len(images), size_bytes=layers, reclaimable_bytes=max(layers - used_by_containers, 0)
        ),
        "containers": EngineUsage(
            count=len(containers),
            size_bytes=sum(int(c.get("SizeRw") or 0) for c in containers),
            reclaimable_bytes=sum(
                int(c.get("SizeRw") or 0) for c in containers if c.get("State") != "running"
            ),
        ),
        "volumes": EngineUsage(
            count=len(df.get("Volumes") or []),
            size_bytes=sum(int(v["UsageData"]["Size"]) for v in volumes),
            reclaimable_bytes=sum(
                int(v["UsageData"]["Size"]) for v in volumes if not v["UsageData"].get("RefCount")
            ),
        ),
        "build_cache": EngineUsage(
            count=len(df.get("BuildCache") or []),
            size_bytes=sum(int(c.get("Size") or 0) for c in cache),
            reclaimable_bytes=sum(int(c.get("Size") or 0) for c in cache if not c.get("InUse")),
        ),
    }
