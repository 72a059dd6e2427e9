"""The task engine through the API, with plain async work (no Docker needed here)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import httpx2
import pytest
from fastapi import Path as FastPath

from docker_manager.api.deps import OperateAccess
from docker_manager.app import create_app
from docker_manager.auth import Scope
from docker_manager.config import Settings
from docker_manager.errors import BuildFailed
from docker_manager.runner import Status, TaskContext, TaskKind, TaskRunner, TaskSpec, TaskStore
from docker_manager.runner.store import StateChange
from docker_manager.runtime import Runtime
from tests.conftest import Tokens
from tests.harness import wait_final

# Also run against PostgreSQL by scripts/test.sh (`-m postgres`).
pytestmark = pytest.mark.postgres

Work = Callable[[TaskContext], Awaitable[dict[str, Any] | None]]

ALL_KINDS = dict.fromkeys(TaskKind, 4)


async def submit(services: Runtime, work: Work, **kwargs: Any) -> str:
    record = await services.runner.submit(
        TaskSpec(task_type=kwargs.pop("task_type", "test_task"), work=work, **kwargs)
    )
    return record.id


async def test_completed_task_shows_its_steps_and_result(
    services: Runtime, client: httpx2.AsyncClient, read: dict[str, str]
) -> None:
    async def work(ctx: TaskContext) -> dict[str, Any]:
        await ctx.event("clone", "starting")
        await ctx.output([{"stream": "stdout", "text": "hello"}])
        await ctx.event("clone", "completed", exit_code=0)
        return {"answer": 42}

    task_id = await submit(services, work, app_id="shop")
    assert task_id.startswith("test_task-") and len(task_id) == len("test_task-") + 10
    body = await wait_final(client, read, task_id)
    assert body["status"] == "completed"
    assert body["result"] == {"answer": 42}
    assert body["task_type"] == "test_task" and body["app_id"] == "shop" and body["stage"] == "clone"
    steps = [(e["stage"], e["status"]) for e in body["events"]]
    assert steps == [
        (None, "queued"),
        (None, "running"),
        ("clone", "starting"),
        ("clone", "completed"),
        ("clone", "completed"),
    ]
    assert body["events"][-1]["final"] is True
    assert [e["seq"] for e in body["events"]] == sorted(e["seq"] for e in body["events"])


async def test_a_failing_step_ends_as_error_never_completed(
    services: Runtime, client: httpx2.AsyncClient, read: dict[str, str]
) -> None:
    async def fails_cleanly(ctx: TaskContext) -> None:
        await ctx.event("build", "starting")
        raise BuildFailed("step 3 returned 1", logs=["x"])

    async def crashes(ctx: TaskContext) -> None:
        raise RuntimeError("bug")

    first = await wait_final(client, read, await submit(services, fails_cleanly))
    assert first["status"] == "error"
    assert first["error"] == "step 3 returned 1"
    assert first["result"] == {"code": "build_failed", "logs": ["x"]}
    second = await wait_final(client, read, await submit(services, crashes))
    assert second["status"] == "error"
    assert "RuntimeError: bug" in second["error"]


async def test_unknown_task_is_404_and_hostile_ids_are_422(
    client: httpx2.AsyncClient, read: dict[str, str]
) -> None:
    response = await client.get("/tasks/status/nope-0000000000", headers=read)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    # An encoded slash splits the path (no route: 404); every other hostile id fails the pattern.
    for hostile, expected in (
        ("..%2F..%2Fetc", 404),
        ("%2e%2e", 422),
        ("a" * 65, 422),
        ("a%00b", 422),
        ("a.b", 422),
    ):
        for path in (f"/tasks/status/{hostile}", f"/tasks/logs/{hostile}", f"/tasks/{hostile}/events"):
            response = await client.get(path, headers=read)
            assert response.status_code == expected, (path, response.status_code)


async def test_caller_task_id_must_be_unused(services: Runtime) -> None:
    async def work(ctx: TaskContext) -> None:
        return None

    await submit(services, work, task_id="my-own-id-1")
    with pytest.raises(Exception, match="already in use"):
        await submit(services, work, task_id="my-own-id-1")


async def test_build_slots_limit_concurrency_and_report_queue_positions(
    tmp_path: Path, services: Runtime, client: httpx2.AsyncClient, read: dict[str, str]
) -> None:
    runner = TaskRunner(
        services.runner.store,
        services.runner.bus,
        limits={**ALL_KINDS, TaskKind.BUILD: 2},
        max_queued=50,
        outbox_enabled=False,
    )
    running = 0
    peak = 0
    release = asyncio.Event()

    async def work(ctx: TaskContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    ids = [
        (await runner.submit(TaskSpec(task_type="test_task", work=work, kind=TaskKind.BUILD))).id
        for _ in range(5)
    ]
    await asyncio.sleep(0.2)
    assert running == 2
    assert [runner.queue_position(i) for i in ids] == [None, None, 1, 2, 3]
    records = [await runner.store.get(i, with_events=False) for i in ids]
    assert [r.status for r in records] == [Status.RUNNING] * 2 + [Status.QUEUED] * 3
    release.set()
    for task_id in ids:
        for _ in range(200):
            if (await runner.store.get(task_id, with_events=False)).status.final:
                break
            await asyncio.sleep(0.02)
    assert peak == 2
    finals = [(await runner.store.get(i, with_events=False)).status for i in ids]
    assert finals == [Status.COMPLETED] * 5


async def test_queue_cap_answers_429(services: Runtime) -> None:
    runner = TaskRunner(
        services.runner.store,
        services.runner.bus,
        limits={**ALL_KINDS, TaskKind.BUILD: 1},
        max_queued=2,
        outbox_enabled=False,
    )
    gate = asyncio.Event()

    async def work(ctx: TaskContext) -> None:
        await gate.wait()

    for _ in range(3):  # one runs, two wait
        await runner.submit(TaskSpec(task_type="test_task", work=work, kind=TaskKind.BUILD))
    await asyncio.sleep(0.05)
    with pytest.raises(Exception) as info:
        await runner.submit(TaskSpec(task_type="test_task", work=work, kind=TaskKind.BUILD))
    assert getattr(info.value, "status_code", None) == 429
    gate.set()
    await runner.shutdown()


async def test_tasks_of_one_app_run_in_order_never_interleaved(services: Runtime) -> None:
    trace: list[str] = []

    def make(name: str) -> Work:
        async def work(ctx: TaskContext) -> None:
            trace.append(f"{name}:start")
            await asyncio.sleep(0.05)
            trace.append(f"{name}:end")

        return work

    ids = [await submit(services, make(n), app_id="ordered-app") for n in "abc"]
    for task_id in ids:
        for _ in range(200):
            if (await services.runner.store.get(task_id, with_events=False)).status.final:
                break
            await asyncio.sleep(0.02)
    assert trace == ["a:start", "a:end", "b:start", "b:end", "c:start", "c:end"]


async def test_cancel_stops_the_work_and_runs_its_cleanup(
    services: Runtime, client: httpx2.AsyncClient, operate: dict[str, str], read: dict[str, str]
) -> None:
    cleaned = asyncio.Event()

    async def work(ctx: TaskContext) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.set()

    task_id = await submit(services, work)
    await asyncio.sleep(0.1)
    started = time.monotonic()
    response = await client.post(f"/tasks/{task_id}/cancel", headers=operate)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert time.monotonic() - started < 2
    assert cleaned.is_set()
    again = await client.post(f"/tasks/{task_id}/cancel", headers=operate)
    assert again.status_code == 409
    assert (await client.post(f"/tasks/{task_id}/cancel", headers=read)).status_code == 403


async def test_restart_marks_leftover_tasks_interrupted(services: Runtime, tmp_path: Path) -> None:
    earlier = TaskStore(services.db.engine, boot_id="earlier-process")
    for status in (Status.QUEUED, Status.RUNNING):
        record = earlier.new_record(
            task_id=f"left-{status.value}", task_type="test_task", app_id=None, files_dir=str(tmp_path)
        )
        await earlier.create(record, first_event={"position": 1})
        await earlier.record(
            record.id, stage="building", status=status.value, change=StateChange(status=status)
        )
    (tmp_path / "build.info.json").write_text(json.dumps({"status": "building", "stage": "building"}))
    recovered = await services.runner.recover()
    assert {"left-queued", "left-running"} <= set(recovered)
    for task_id in ("left-queued", "left-running"):
        record = await services.runner.store.get(task_id)
        assert record.status is Status.INTERRUPTED
        assert "restarted" in (record.error or "")
        assert record.events[-1].status == "interrupted" and record.events[-1].data["final"] is True
    info = json.loads((tmp_path / "build.info.json").read_text())
    assert info["status"] == "error" and info["task_status"] == "interrupted"
    assert "restarted" in (tmp_path / "error.log").read_text()


async def test_list_filters_and_paginates(
    services: Runtime, client: httpx2.AsyncClient, read: dict[str, str]
) -> None:
    async def work(ctx: TaskContext) -> None:
        return None

    ids = [await submit(services, work, app_id="paged-app", task_type="paged_task") for _ in range(7)]
    for task_id in ids:
        await wait_final(client, read, task_id)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"app_id": "paged-app", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/tasks", params=params, headers=read)).json()
        seen.extend(t["task_id"] for t in page["tasks"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    assert seen == list(reversed(ids))  # newest first
    typed = (
        await client.get("/tasks", params={"type": "paged_task", "status": "completed"}, headers=read)
    ).json()
    assert {t["task_id"] for t in typed["tasks"]} == set(ids)
    assert (await client.get("/tasks", params={"cursor": "garbage!"}, headers=read)).status_code == 422
    assert (await client.get("/tasks", params={"status": "bogus"}, headers=read)).status_code == 422


async def test_events_as_ndjson_and_sse_with_resume(
    services: Runtime, client: httpx2.AsyncClient, read: dict[str, str]
) -> None:
    gate = asyncio.Event()

    async def work(ctx: TaskContext) -> None:
        await ctx.event("step", "one")
        await gate.wait()
        await ctx.output([{"stream": "stdout", "text": f"line {i}"} for i in range(3)])
        await ctx.event("step", "two")

    task_id = await submit(services, work)

    async def release_soon() -> None:
        await asyncio.sleep(0.3)
        gate.set()

    releaser = asyncio.create_task(release_soon())
    lines = []
    async with client.stream(
        "GET", f"/tasks/{task_id}/events", params={"format": "ndjson"}, headers=read
    ) as r:
        assert r.headers["content-type"].startswith("application/x-ndjson")
        async for line in r.aiter_lines():
            if line:
                lines.append(json.loads(line))
    await releaser
    statuses = [item["status"] for item in lines]
    assert statuses == ["queued", "running", "one", "log", "two", "completed"]
    assert lines[3]["lines"] == [{"stream": "stdout", "text": f"line {i}"} for i in range(3)]
    assert lines[-1]["final"] is True
    assert [item["seq"] for item in lines] == list(range(1, 7))

    # SSE, resumed after event 3 with Last-Event-ID.
    frames = []
    async with client.stream("GET", f"/tasks/{task_id}/events", headers={**read, "Last-Event-ID": "3"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-accel-buffering"] == "no"
        async for line in r.aiter_lines():
            frames.append(line)
    ids = [int(f.split(": ")[1]) for f in frames if f.startswith("id: ")]
    names = [f.split(": ")[1] for f in frames if f.startswith("event: ")]
    assert ids == [4, 5, 6]
    assert names == ["log", "step", "end"]
    after = [
        json.loads(line)
        for line in (
            await client.get(
                f"/tasks/{task_id}/events", params={"after": 5, "format": "ndjson"}, headers=read
            )
        ).text.splitlines()
    ]
    assert [item["seq"] for item in after] == [6]
    # After the final event of an ended task: nothing more, and the stream ends at once.
    done = await asyncio.wait_for(
        client.get(f"/tasks/{task_id}/events", params={"after": 6, "format": "ndjson"}, headers=read), 5
    )
    assert done.status_code == 200 and done.text.strip() == ""
    assert (await client.get("/tasks/nope-1/events", headers=read)).status_code == 404


async def test_status_polls_answer_what_the_route_would_and_follow_the_task(
    services: Runtime, client: httpx2.AsyncClient, tokens: Tokens
) -> None:
    """The status poll is answered below FastAPI's routing (api/hot.py) and a finished task's JSON
    is encoded once: the answer must still be the route's, move with the task, and every case the
    fast path does not answer must reach the route's errors."""
    read, metrics_only = tokens.headers(Scope.READ), tokens.headers(Scope.METRICS)
    release = asyncio.Event()

    async def work(ctx: TaskContext) -> dict[str, Any]:
        await ctx.event("build", "starting")
        await release.wait()
        return {"answer": 1}

    task_id = await submit(services, work)
    await asyncio.sleep(0.2)
    running = await client.get(f"/tasks/status/{task_id}", headers=read)
    assert running.status_code == 200 and running.headers["content-type"] == "application/json"
    assert running.headers["x-request-id"]
    assert running.json()["status"] == "running" and running.json()["stage"] == "build"
    release.set()
    final = await wait_final(client, read, task_id)
    expected = (await services.tasks.status(task_id, await _principal(services, tokens))).model_dump(
        mode="json"
    )
    assert final == expected and final["result"] == {"answer": 1}
    again = await client.get(f"/tasks/status/{task_id}", headers=read)
    assert again.content == (await client.get(f"/tasks/status/{task_id}", headers=read)).content
    assert int(again.headers["content-length"]) == len(again.content)
    # The route's own answers where the fast path steps aside.
    refused = await client.get(f"/tasks/status/{task_id}", headers=metrics_only)
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    host_command = await submit(services, work, task_type="generic_task")
    hidden = await client.get(f"/tasks/status/{host_command}", headers=read)
    assert hidden.status_code == 403 and hidden.json()["code"] == "insufficient_scope"
    # Metrics name the route, not the raw path.
    scraped = (await client.get("/metrics", headers=metrics_only)).text
    assert 'route="/tasks/status/{task_id}"' in scraped and task_id not in scraped
    # A purged task is gone, encoded answer or not.
    await services.runner.store.purge([task_id])
    gone = await client.get(f"/tasks/status/{task_id}", headers=read)
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"


async def _principal(services: Runtime, tokens: Tokens) -> Any:
    principal = await services.tokens.authenticate(tokens.by_scope[Scope.READ])
    assert principal is not None
    return principal


def test_the_runner_refuses_a_task_kind_without_a_limit(services: Runtime) -> None:
    # A kind without a limit would run unbounded: the runner does not start with one missing.
    with pytest.raises(ValueError, match="rollback"):
        TaskRunner(
            services.runner.store,
            services.runner.bus,
            limits={k: 1 for k in TaskKind if k is not TaskKind.ROLLBACK},
            max_queued=1,
            outbox_enabled=False,
        )


def test_the_fast_path_reads_what_it_matches_and_requires_from_the_route(tmp_path: Path) -> None:
    """api/fastpath.py shadows the status route: its prefix, its id pattern and its scope come from
    the route object, so a change to the route reaches it."""
    from fastapi import APIRouter
    from fastapi.routing import APIRoute

    from docker_manager.api.fastpath import StatusShape
    from docker_manager.api.routes.tasks import task_status

    route = next(
        r
        for r in create_app(Settings(data_dir=tmp_path)).router.routes
        if getattr(r, "endpoint", None) is task_status
    )
    assert isinstance(route, APIRoute)
    shape = StatusShape(route)
    assert (shape.prefix, shape.param, shape.guard.scope) == ("/tasks/status/", "task_id", Scope.READ)
    assert shape.value_of("/tasks/status/build_1-a") == "build_1-a"
    for path in (
        "/tasks/status/a\n",
        "/tasks/status/a/b",
        "/tasks/status/" + "a" * 65,
        "/tasks/x",
        "/tasks/status/",
    ):
        assert shape.value_of(path) is None, path
    # Another route (another pattern, another scope): another shape.
    other = APIRouter()

    @other.get("/jobs/{job}")
    async def job(job: Annotated[str, FastPath(pattern=r"^[0-9]{3}$")], _: OperateAccess) -> None:
        return None

    shaped = StatusShape(other.routes[0])  # type: ignore[arg-type]
    assert shaped.value_of("/jobs/123") == "123" and shaped.value_of("/jobs/12a") is None
    assert shaped.guard.scope is Scope.OPERATE
