"""`/tasks/run-stream`: real host processes, their output, limits, cancel and disconnect."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx2
import psutil

from docker_manager.config import Settings
from tests.harness import app_client, wait_final


async def run_stream(
    client: httpx2.AsyncClient, headers: dict[str, str], **body: Any
) -> list[dict[str, Any]]:
    lines = []
    async with client.stream(
        "POST", "/tasks/run-stream", json=body, headers={**headers, "Accept": "application/x-ndjson"}
    ) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line:
                lines.append(json.loads(line))
    return lines


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


async def test_output_lines_streams_and_exit_code(client: httpx2.AsyncClient, admin: dict[str, str]) -> None:
    lines = await run_stream(
        client, admin, cmd=["sh", "-c", "echo out-one; echo err-one >&2; printf 'no newline'; exit 3"]
    )
    assert lines[0]["status"] == "started" and lines[0]["argv"][0] == "sh"
    task_id = lines[0]["task_id"]
    assert task_id.startswith("generic_task-")
    output = {(line["stream"], line["line"]) for line in lines if "line" in line}
    assert output == {("stdout", "out-one"), ("stderr", "err-one"), ("stdout", "no newline")}
    assert lines[-1] == {
        "task_id": task_id,
        "status": "error",
        "exit_code": 3,
        "signal": None,
        "error": "the command failed: exit code 3",
    }
    status = await wait_final(client, admin, task_id)
    assert status["status"] == "error" and status["result"]["exit_code"] == 3
    logs = (await client.get(f"/tasks/logs/{task_id}", headers=admin)).json()
    assert "out-one" in logs["build_logs"]["raw"] and "err-one" in logs["build_logs"]["raw"]
    ok = await run_stream(client, admin, cmd="echo 'quoted words' $HOME")
    assert [line["line"] for line in ok if "line" in line] == ["quoted words /root"]  # a string: sh -c
    assert ok[-1]["status"] == "completed" and ok[-1]["exit_code"] == 0


async def test_megabytes_of_output_and_long_lines_never_deadlock(
    client: httpx2.AsyncClient, admin: dict[str, str]
) -> None:
    script = (
        "head -c 3000000 /dev/zero | tr '\\0' 'a' | fold -w 1000; head -c 200000 /dev/zero | tr '\\0' 'b' >&2"
    )
    started = time.monotonic()
    lines = await run_stream(client, admin, cmd=["sh", "-c", script], task_id=f"big-output-{os.getpid()}")
    assert time.monotonic() - started < 60
    out = [line for line in lines if line.get("stream") == "stdout"]
    err = [line for line in lines if line.get("stream") == "stderr"]
    assert len(out) == 3000 and all(len(line["line"]) == 1000 for line in out)
    assert sum(len(line["line"]) for line in err) == 200_000
    assert max(len(line["line"]) for line in err) <= 64 * 1024  # the long line was cut
    assert lines[-1]["status"] == "completed"


async def test_cwd_env_and_the_rules(
    client: httpx2.AsyncClient, admin: dict[str, str], operate: dict[str, str], settings: Settings
) -> None:
    work = settings.work_paths[0] / "project"
    work.mkdir(parents=True, exist_ok=True)
    lines = await run_stream(
        client,
        admin,
        cmd=["sh", "-c", "pwd; echo $GREETING; echo $PATH"],
        cwd=str(work),
        env={"GREETING": "hi"},
    )
    texts = [line["line"] for line in lines if "line" in line]
    assert texts[0] == str(work) and texts[1] == "hi" and texts[2].startswith("/usr/local/sbin")
    for body, expected in (
        ({"cmd": "ls", "cwd": "/"}, 403),  # outside DM_WORK_ROOTS
        ({"cmd": "ls", "cwd": "../../etc"}, 403),
        ({"cmd": "ls", "cwd": "/etc"}, 403),
        ({"cmd": "ls", "env": {"LD_PRELOAD": "/tmp/x.so"}}, 422),
        ({"cmd": "ls", "env": {"PATH": "/tmp"}}, 422),
        ({"cmd": "   "}, 422),
        ({"cmd": []}, 422),
        ({"cmd": "ls", "task_id": "../x"}, 422),
    ):
        response = await client.post("/tasks/run-stream", json=body, headers=admin)
        assert response.status_code == expected, (body, response.text)
    assert (await client.post("/tasks/run-stream", json={"cmd": "ls"}, headers=operate)).status_code == 403
    missing = await run_stream(client, admin, cmd=["no-such-program-here"])
    assert missing[-1]["status"] == "error" and "no such program" in missing[-1]["error"]


async def test_with_the_shell_turned_off_metacharacters_are_not_interpreted(
    tmp_path: Path, settings: Settings
) -> None:
    config = Settings(
        data_dir=tmp_path / "data",
        admin_token="no-shell-admin",
        run_allow_shell=False,  # type: ignore[arg-type]
    )
    headers = {"Authorization": "Bearer no-shell-admin"}
    canary = tmp_path / "pwned"
    async with app_client(config) as (_, client):
        lines = await run_stream(client, headers, cmd=f"echo hello; touch {canary} && $(touch {canary})")
        unbalanced = await client.post("/tasks/run-stream", json={"cmd": "echo 'x"}, headers=headers)
    assert not canary.exists()
    assert [line["line"] for line in lines if "line" in line] == [
        f"hello; touch {canary} && $(touch {canary})"
    ]
    assert unbalanced.status_code == 422 and unbalanced.json()["field"] == "cmd"


async def test_cancel_kills_the_whole_process_group(
    client: httpx2.AsyncClient, admin: dict[str, str]
) -> None:
    marker = f"sleep 3{os.getpid() % 1000}"
    task_id = f"cancel-me-{os.getpid()}"

    async def run() -> list[dict[str, Any]]:
        return await run_stream(
            client, admin, cmd=["sh", "-c", f"{marker} & {marker}; wait"], task_id=task_id
        )

    streaming = asyncio.create_task(run())
    for _ in range(100):
        if len(processes_with(marker)) >= 2:
            break
        await asyncio.sleep(0.05)
    assert len(processes_with(marker)) >= 2
    cancelled = await client.post(f"/tasks/{task_id}/cancel", headers=admin)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    lines = await streaming
    assert lines[-1]["status"] == "cancelled"
    await asyncio.sleep(0.2)
    assert processes_with(marker) == []  # the background child went too


async def test_timeout_ends_the_command_with_the_reason(
    client: httpx2.AsyncClient, admin: dict[str, str]
) -> None:
    lines = await run_stream(client, admin, cmd=["sh", "-c", "echo started; sleep 30"], timeout=1)
    assert lines[-1]["status"] == "error" and "timeout" in lines[-1]["error"]


async def test_a_client_that_goes_away_takes_the_command_with_it(
    live: httpx2.AsyncClient, client: httpx2.AsyncClient, admin: dict[str, str]
) -> None:
    marker = f"sleep 4{os.getpid() % 1000}"
    task_id = f"dropped-{os.getpid()}"
    body = {"cmd": ["sh", "-c", f"{marker}"], "task_id": task_id}
    async with live.stream(
        "POST", "/tasks/run-stream", json=body, headers={**admin, "Accept": "application/x-ndjson"}
    ) as response:
        lines = response.aiter_lines()  # kept: an abandoned line iterator closes the response
        first = json.loads(await anext(lines))
        assert first["task_id"] == task_id
        for _ in range(100):
            if processes_with(marker):
                break
            await asyncio.sleep(0.05)
        assert processes_with(marker), (await client.get(f"/tasks/status/{task_id}", headers=admin)).json()
    status = await wait_final(client, admin, task_id)
    assert status["status"] == "cancelled"
    assert processes_with(marker) == []
