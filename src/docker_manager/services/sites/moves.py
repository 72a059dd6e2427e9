"""What update-port writes into the task's summary when it moved a container to a new port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docker_manager.runner.files import TaskFiles
from docker_manager.schemas.sites import UpdatePortRequest


async def record_move(
    folder: Path,
    container: dict[str, Any],
    port_key: str,
    body: UpdatePortRequest,
    target: Path,
    reload: dict[str, Any],
) -> None:
    """The task's build.info.json learns the moved container, its new port and upstream."""
    upstream = {
        "domain": body.domain,
        "conf_path": str(target),
        "port": body.new_port,
        "upstream_host": "127.0.0.1",
        "nginx_reload": reload,
    }
    await TaskFiles(folder).merge_info(
        {
            "container_id": container["id"],
            "container_name": container["name"],
            "host_port": body.new_port,
            "localrun": {"ports_requested": {port_key: body.new_port}, "container": container},
            "upstream": upstream,
        }
    )
