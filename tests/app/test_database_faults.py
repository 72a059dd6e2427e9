"""Ordinary faults of the database: held by another process (SQLite), or down (PostgreSQL).

A write that cannot get through answers 503 with a clear code and `Retry-After`, leaves nothing
half-recorded (no task row without its folder, no folder without its row), and the service
recovers by itself once the database is back.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from docker_manager.config import Settings
from tests.harness import app_client

# Also run against PostgreSQL by scripts/test.sh (`-m postgres`).
pytestmark = pytest.mark.postgres

ADMIN = {"Authorization": "Bearer db-admin"}


def hold_exclusive(database: Path, seconds: float, locked: threading.Event) -> None:
    """Another process's view: a connection holding `BEGIN EXCLUSIVE` (a backup, an open sqlite3)."""
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    locked.set()
    time.sleep(seconds)
    connection.execute("COMMIT")
    connection.close()


@pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="the SQLite case (PostgreSQL below)")
async def test_a_database_held_by_another_process_is_503_then_recovers(tmp_path: Path) -> None:
    config = Settings(data_dir=tmp_path, admin_token="db-admin", db_busy_timeout=1)  # type: ignore[arg-type]
    body = {"dockerfile_content": "FROM dm-test-bb:latest\n", "task_id": "held-1"}
    async with app_client(config) as (_, client):
        assert (await client.get("/tasks", headers=ADMIN)).status_code == 200  # token cached
        before = sorted(p.name for p in config.builds_path.iterdir())
        locked = threading.Event()
        holder = threading.Thread(
            target=hold_exclusive, args=(config.data_dir / "docker-manager.db", 4.0, locked)
        )
        holder.start()
        locked.wait(5)
        started = time.monotonic()
        refused = await client.post("/docker/build/start", json=body, headers=ADMIN)
        waited = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "database_busy" and refused.headers["Retry-After"] == "2"
        assert 0.9 < waited < 3.5  # it waited (DM_DB_BUSY_TIMEOUT), then gave up
        reads = await client.get("/tasks", headers=ADMIN)  # reads go on meanwhile
        assert reads.status_code == 200
        holder.join()
        assert sorted(p.name for p in config.builds_path.iterdir()) == before  # no folder left
        assert (await client.get("/tasks/status/held-1", headers=ADMIN)).status_code == 404  # no row
        again = await client.post("/docker/build/start", json=body, headers=ADMIN)
        assert again.status_code == 200, again.text  # the same id: nothing of the first try remains


@pytest.mark.skipif(not os.environ.get("TEST_PG_DATA"), reason="needs the test PostgreSQL (scripts/test.sh)")
async def test_postgresql_down_is_503_then_recovers_without_a_restart(tmp_path: Path) -> None:
    data = os.environ["TEST_PG_DATA"]
    pg_ctl = [*os.environ["TEST_PG_CTL"].split(), "-D", f"{data}/db"]
    config = Settings(
        data_dir=tmp_path,
        admin_token="db-admin",  # type: ignore[arg-type]
        database_url=os.environ["TEST_DATABASE_URL"],
    )
    async with app_client(config) as (_, client):
        assert (await client.get("/tasks", headers=ADMIN)).status_code == 200
        subprocess.run([*pg_ctl, "stop", "-m", "fast", "-w"], check=True, capture_output=True)
        try:
            down = await client.post(
                "/docker/build/start", json={"dockerfile_content": "FROM dm-test-bb:latest\n"}, headers=ADMIN
            )
            assert down.status_code == 503, down.text
            assert down.json()["code"] in ("database_unavailable", "database_busy")
            assert down.headers["Retry-After"] == "2"
        finally:
            subprocess.run(
                [*pg_ctl, "-l", f"{data}/log", "start", "-w", "-o", os.environ["TEST_PG_OPTIONS"]],
                check=True,
                capture_output=True,
            )
        for _ in range(50):
            back = await client.get("/tasks", headers=ADMIN)
            if back.status_code == 200:
                break
            time.sleep(0.2)
        assert back.status_code == 200
        started = await client.post(
            "/docker/build/start", json={"dockerfile_content": "FROM dm-test-bb:latest\n"}, headers=ADMIN
        )
        assert started.status_code == 200, started.text
