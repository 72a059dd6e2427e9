"""Metrics, the audit log and request ids, against the real engine, nginx and a real server process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from docker_manager.config import Settings
from docker_manager.runtime import Runtime
from tests.harness import (
    NginxServer,
    app_client,
    docker_cli,
    free_port,
    nginx,
    service_process,
    started_app,
    wait_final,
)

pytestmark = pytest.mark.docker
ADMIN = {"Authorization": "Bearer obs-admin"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def nginx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


@pytest.fixture
async def observed(
    tmp_path: Path, settings: Settings, nginx_server: NginxServer
) -> AsyncIterator[tuple[Runtime, httpx2.AsyncClient, Settings]]:
    config = Settings(
        data_dir=tmp_path / "data",
        admin_token="obs-admin",  # type: ignore[arg-type]
        context_roots=settings.context_paths,
        audit_file=tmp_path / "audit.jsonl",
        switch_drain_seconds=0,
        switch_stop_timeout=1,
        **nginx_server.settings(),  # type: ignore[arg-type]
    )
    async with app_client(config) as (services, client):
        yield services, client, config


async def token(client: httpx2.AsyncClient, *scopes: str) -> dict[str, str]:
    made = await client.post(
        "/auth/tokens", json={"name": "-".join(scopes), "scopes": list(scopes)}, headers=ADMIN
    )
    assert made.status_code in (200, 201), made.text
    return {"Authorization": f"Bearer {made.json()['token']}"}


async def scrape(client: httpx2.AsyncClient) -> Samples:
    answer = await client.get("/metrics", headers=ADMIN)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


async def test_metrics_move_by_exactly_what_was_done(
    observed: tuple[Runtime, httpx2.AsyncClient, Settings], unique: str, base_image: str
) -> None:
    _services, client, config = observed
    good = config.context_paths[0] / f"{unique}-good"
    good.mkdir(parents=True)
    (good / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN mkdir /www && echo observed > /www/index.html\n"
        'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n'
    )
    bad = config.context_paths[0] / f"{unique}-bad"
    bad.mkdir(parents=True)
    (bad / "Dockerfile").write_text(f"FROM {base_image}\nRUN false\n")
    before = await scrape(client)

    built = await client.post("/docker/build", json={"path": good.name, "tag": f"{unique}:v1"}, headers=ADMIN)
    assert built.status_code == 200, built.text
    failed = await client.post("/docker/build", json={"path": bad.name}, headers=ADMIN)
    assert failed.status_code == 422
    started = await client.post(
        "/docker/build/start", json={"context_path": good.name, "app_id": unique}, headers=ADMIN
    )
    task_id = started.json()["task_id"]
    assert (await wait_final(client, ADMIN, task_id))["status"] == "completed"
    port = free_port()
    ran = await client.post(
        "/docker/localrun",
        json={
            "lz4_path": str(config.builds_path / task_id / f"{unique}_latest.tar.lz4"),
            "task_id": task_id,
            "ports": {"80/tcp": port},
        },
        headers=ADMIN,
    )
    assert ran.status_code == 200, ran.text
    await asyncio.sleep(0.5)
    signed = await client.post(
        "/nginx/sign-domain",
        json={
            "domain": f"{unique}.example.com",
            "app_id": unique,
            "new_container": ran.json()["container_id"],
        },
        headers=ADMIN,
    )
    assert signed.status_code == 200, signed.text

    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("dm_tasks_created_total", type="docker_build") == 3
    assert moved("dm_tasks_finished_total", type="docker_build", status="completed") == 2
    assert moved("dm_tasks_finished_total", type="docker_build", status="error") == 1
    assert moved("dm_tasks_finished_total", type="localrun", status="completed") == 1
    assert moved("dm_http_requests_total", method="POST", route="/docker/build", status="200") == 1
    assert moved("dm_http_requests_total", method="POST", route="/docker/build", status="422") == 1
    assert moved("dm_traffic_switches_total", kind="sign_domain", result="ok") == 1
    assert moved("dm_nginx_reloads_total", result="ok") == 1
    assert moved("dm_releases_total", source="localrun") == 1
    assert moved("dm_task_stage_duration_seconds_count", type="docker_build", stage="building") == 3
    assert moved("dm_task_stage_duration_seconds_count", type="localrun", stage="decompiling") == 1
    assert moved("dm_task_duration_seconds_count", type="docker_build") == 3
    assert value(after, "dm_engine_up") == 1
    assert value(after, "dm_disk_free_bytes", root="builds") > 0
    assert value(after, "dm_tasks_running", kind="build") == value(before, "dm_tasks_running", kind="build")
    assert value(after, "process_resident_memory_bytes") > 0  # the standard collectors
    # Bounded labels: no task id, container id or path anywhere in the labels.
    for _name, labels in after:
        for _key, label in labels:
            assert task_id not in label and ran.json()["container_id"] not in label and "/tmp" not in label
    docker_cli("rm", "-f", ran.json()["container_id"])


async def test_metrics_need_the_metrics_or_read_scope(
    observed: tuple[Runtime, httpx2.AsyncClient, Settings],
) -> None:
    _services, client, _config = observed
    scraper = await token(client, "metrics")
    assert (await client.get("/metrics", headers=scraper)).status_code == 200
    assert (await client.get("/tasks", headers=scraper)).status_code == 403  # nothing else
    assert (await client.get("/metrics", headers=await token(client, "read"))).status_code == 200
    refused = await client.get("/metrics", headers=await token(client, "operate"))
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    assert (await client.get("/metrics")).status_code == 401


async def test_the_audit_log_records_changes_and_refusals_without_secrets(
    observed: tuple[Runtime, httpx2.AsyncClient, Settings], unique: str, base_image: str
) -> None:
    services, client, config = observed
    reader = await token(client, "read")
    ran = await client.post(
        "/docker/run",
        json={
            "image": base_image,
            "name": f"{unique}-audited",
            "command": ["sleep", "30"],
            "env": {"API_PASSWORD": "hunter2-secret"},
            "app_id": unique,
        },
        headers={**ADMIN, "X-Request-ID": f"ctl-{unique}"},
    )
    assert ran.status_code == 200 and ran.headers["x-request-id"] == f"ctl-{unique}"
    denied = await client.post(
        "/docker/run", json={"image": base_image}, headers={"Authorization": "Bearer wrong"}
    )
    forbidden = await client.post("/docker/stop", json={"id_or_name": f"{unique}-audited"}, headers=reader)
    invalid = await client.post("/docker/run", json={"image": "", "app_id": unique}, headers=ADMIN)
    read_only = await client.get("/docker/containers", headers=reader)
    assert (denied.status_code, forbidden.status_code, invalid.status_code, read_only.status_code) == (
        401,
        403,
        422,
        200,
    )

    page = (await client.get("/audit", params={"limit": 10}, headers=ADMIN)).json()["entries"]
    by_request = {e["request_id"]: e for e in page}
    mine = by_request[f"ctl-{unique}"]
    assert (mine["route"], mine["status"], mine["outcome"], mine["token_name"]) == (
        "/docker/run",
        200,
        "ok",
        "bootstrap-admin",
    )
    assert mine["target"] == {"app_id": unique, "image": base_image, "name": f"{unique}-audited"}
    assert by_request[denied.headers["x-request-id"]]["error_code"] == "unauthorized"
    assert by_request[denied.headers["x-request-id"]]["token_id"] is None
    refused = by_request[forbidden.headers["x-request-id"]]
    assert (refused["status"], refused["error_code"], refused["token_name"]) == (
        403,
        "insufficient_scope",
        "read",
    )
    assert by_request[invalid.headers["x-request-id"]]["outcome"] == "rejected"
    assert read_only.headers["x-request-id"] not in by_request  # reads are not audited
    for entry in page:
        assert entry["duration_ms"] >= 0 and entry["client"] == "127.0.0.1"

    mine_only = (await client.get("/audit", params={"app_id": unique}, headers=ADMIN)).json()["entries"]
    assert {e["request_id"] for e in mine_only} == {f"ctl-{unique}", invalid.headers["x-request-id"]}
    denials = (await client.get("/audit", params={"outcome": "denied"}, headers=ADMIN)).json()["entries"]
    assert {e["status"] for e in denials} <= {401, 403, 429} and len(denials) >= 2
    assert (await client.get("/audit", headers=reader)).status_code == 403

    # No secret anywhere: not in the database file, not in the audit file.
    db_file = config.data_dir / "docker-manager.db"
    with sqlite3.connect(db_file) as conn:
        rows = conn.execute("select * from audit_log").fetchall()
    assert rows and "hunter2" not in json.dumps(rows, default=str)
    lines = config.audit_file.read_text().splitlines() if config.audit_file else []
    assert len(lines) >= 4 and all(json.loads(line)["request_id"] for line in lines)
    assert "hunter2" not in "".join(lines) and "wrong" not in "".join(lines)

    # logrotate: the file is moved, SIGHUP, the next entry goes to a new file.
    if not services.observers.hup_installed:
        pytest.skip("no SIGHUP handler in this loop")
    assert config.audit_file is not None
    config.audit_file.rename(config.audit_file.with_suffix(".1"))
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(0.1)
    await client.post("/docker/stop", json={"id_or_name": f"{unique}-audited", "timeout": 1}, headers=ADMIN)
    assert json.loads(config.audit_file.read_text().splitlines()[0])["route"] == "/docker/stop"
    docker_cli("rm", "-f", f"{unique}-audited")


async def test_a_request_id_ties_the_answer_its_task_and_its_audit_entry(
    observed: tuple[Runtime, httpx2.AsyncClient, Settings], unique: str, base_image: str
) -> None:
    _services, client, config = observed
    context = config.context_paths[0] / f"{unique}-tied"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM {base_image}\n")
    rid = f"dash-{unique}"
    started = await client.post(
        "/docker/build/start", json={"context_path": context.name}, headers={**ADMIN, "X-Request-ID": rid}
    )
    assert started.headers["x-request-id"] == rid
    status = await wait_final(client, ADMIN, started.json()["task_id"])
    docker_cli("rmi", f"{status['task_id']}:latest", check=False)  # (no tag: the task's own)
    assert status["request_id"] == rid and status["events"][0]["request_id"] == rid
    entries = (await client.get("/audit", headers=ADMIN)).json()["entries"]
    assert [e["route"] for e in entries if e["request_id"] == rid] == ["/docker/build/start"]
    # An id that is not sane is replaced, never echoed.
    odd = await client.get("/tasks", headers={**ADMIN, "X-Request-ID": 'a b"<script>'})
    assert odd.headers["x-request-id"].startswith("req-")


def test_json_logs_carry_the_request_id_and_the_cli_reads_the_audit(tmp_path: Path) -> None:
    log_file = tmp_path / "stderr.log"
    with (
        service_process(
            tmp_path / "data", stderr=log_file, DM_LOG_FORMAT="json", DM_ACCESS_LOG="true"
        ) as svc,
        httpx2.Client(base_url=svc.url, headers=svc.headers, timeout=30) as http,
    ):
        answer = http.post(
            "/auth/tokens",
            json={"name": "cli-made", "scopes": ["read"]},
            headers={"X-Request-ID": "trace-0001-abc"},
        )
        assert answer.status_code in (200, 201)
        assert http.get("/nope-not-a-route").status_code == 404
    lines = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "event", "logger"} <= set(line) for line in lines)
    assert any(line.get("request_id") == "trace-0001-abc" for line in lines)
    shown = subprocess.run(
        [sys.executable, "-m", "docker_manager", "audit", "--json", "--limit", "5"],
        env={**os.environ, "DM_DATA_DIR": str(tmp_path / "data"), "DM_CONFIG": "/nonexistent.json"},
        capture_output=True,
        text=True,
        check=True,
    )
    entries = [json.loads(line) for line in shown.stdout.splitlines()]
    assert any(e["request_id"] == "trace-0001-abc" and e["route"] == "/auth/tokens" for e in entries)
    assert all("token" not in json.dumps(e.get("target", {})) or "cli-made" in json.dumps(e) for e in entries)


async def test_an_unexpected_error_is_logged_once_and_answered_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = Settings(data_dir=tmp_path / "data", admin_token="obs-admin")  # type: ignore[arg-type]
    async with started_app(config) as (app, _client):
        services = app.state.runtime

        async def broken(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError("boom in the service")

        monkeypatch.setattr(services.host, "info", broken)
        # As a server answers: the app's error becomes a 500, not an exception in the client.
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            answer = await client.get("/system/info", headers={**ADMIN, "X-Request-ID": "boom-req-0001"})
            assert answer.status_code == 500
            body = answer.json()
            assert body["request_id"] == "boom-req-0001"
            assert "Traceback" not in answer.text and "boom in" not in answer.text
            logged = [r for r in caplog.records if "boom-req-0001" in r.getMessage()]
            assert len(logged) == 1 and logged[0].exc_info is not None
            entries = (await client.get("/audit", headers=ADMIN)).json()["entries"]
            assert not [e for e in entries if e["request_id"] == "boom-req-0001"]  # a read: not audited
            scraped = samples((await client.get("/metrics", headers=ADMIN)).text)
            assert (
                value(scraped, "dm_http_requests_total", method="GET", route="/system/info", status="500")
                >= 1
            )


async def test_audit_targets_come_from_the_path_first_and_floods_are_summarised(
    observed: tuple[Runtime, httpx2.AsyncClient, Settings], tmp_path: Path
) -> None:
    _services, client, config = observed
    reader = await token(client, "read")
    # The body of a route that takes none cannot rename what the path names.
    decoy = await client.post(
        "/tasks/no-such-task/cancel", json={"task_id": "decoy", "app_id": "victim"}, headers=ADMIN
    )
    assert decoy.status_code == 404
    # A refused request's body is read before its scope is checked: what it says stays one line.
    hostile = "\u001b]52;c;cHduZWQ=\u0007\nFAKE 200 ok bootstrap-admin POST /docker/rm"
    await client.post(
        "/docker/run",
        content=json.dumps({"image": "x", "app_id": hostile}),
        headers={**reader, "Content-Type": "application/vnd.api+json"},
    )
    for _ in range(45):
        await client.get("/tasks", headers={"Authorization": "Bearer wrong-token"})
    entries = (await client.get("/audit", params={"limit": 200}, headers=ADMIN)).json()["entries"]
    cancel = next(e for e in entries if e["route"] == "/tasks/{task_id}/cancel")
    assert cancel["target"]["task_id"] == "no-such-task"
    flood = [e for e in entries if e["route"] == "/tasks" and e["status"] in (401, 429)]
    # 45 refusals (401, then 429 once the address is blocked): 30 a minute are written, the rest
    # only counted.
    assert 20 <= len(flood) <= 30 and {e["status"] for e in flood} == {401, 429}
    shown = subprocess.run(
        [sys.executable, "-m", "docker_manager", "audit", "--limit", "200"],
        env={**os.environ, "DM_DATA_DIR": str(config.data_dir), "DM_CONFIG": "/nonexistent.json"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "\x1b" not in shown and "\x07" not in shown
    assert not any(line.startswith("FAKE") for line in shown.splitlines())
