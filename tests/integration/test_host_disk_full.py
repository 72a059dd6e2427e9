"""A full disk under the task folders: logs are cut, the task still ends in a final state."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docker_manager.config import Settings
from docker_manager.runner import TaskContext, TaskSpec
from tests.harness import app_client


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_logs_are_cut_and_the_task_still_ends(tmp_path: Path, tiny_disk: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", builds_dir=tiny_disk, admin_token="full-admin")  # type: ignore[arg-type]
    headers = {"Authorization": "Bearer full-admin"}
    async with app_client(settings) as (services, client):

        async def chatty(ctx: TaskContext) -> dict[str, Any]:
            await ctx.merge_summary({"status": "building", "stage": "chatting"})
            for block in range(40):
                await ctx.output(
                    [{"stream": "stdout", "text": f"{block}-{i} " + "x" * 200} for i in range(100)]
                )
            await ctx.merge_summary({"stage": "after the flood"})
            return {"ok": True}

        record = await services.runner.submit(
            TaskSpec(task_type="test_task", work=chatty, files_dir=tiny_disk / "full-task")
        )
        for _ in range(200):
            current = await services.runner.store.get(record.id)
            if current.status.final:
                break
            await asyncio.sleep(0.05)
        assert current.status.value == "completed"
        assert current.events[-1].data["final"] is True and current.events[-1].data["log_truncated"] is True
        # The summary was never left half-written, and reading the folder still works.
        info = json.loads((tiny_disk / "full-task" / "build.info.json").read_text())
        assert info["status"] == "building"
        logs = await client.get(f"/tasks/logs/{record.id}", params={"tail": 5}, headers=headers)
        assert logs.status_code == 200
        # Once there is room again, new tasks write their files as usual.
        for path in (tiny_disk / "full-task").iterdir():
            path.unlink()

        async def quiet(ctx: TaskContext) -> None:
            await ctx.output([{"stream": "stdout", "text": "room again"}])

        second = await services.runner.submit(
            TaskSpec(task_type="test_task", work=quiet, files_dir=tiny_disk / "next-task")
        )
        for _ in range(100):
            if (await services.runner.store.get(second.id)).status.final:
                break
            await asyncio.sleep(0.05)
        assert "room again" in (tiny_disk / "next-task" / "build.log").read_text()
