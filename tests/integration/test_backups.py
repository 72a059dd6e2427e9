"""Backups and restore against real server processes, their own nginx and the real engine: a
backup taken while deploys and a rollback run restores into a new data folder that a new service
serves from as before (apps, releases, audit, tokens, sites, sealed env); every bad archive is
refused with nothing written; the API's streamed backup and the scheduled ones; an upgrade
(stop, start on the same data) under a request loop fails no request."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest

from docker_manager.adapters.backup_cipher import SealingWriter
from docker_manager.db.engine import schema_revisions
from tests.harness import (
    BASE_IMAGE,
    NginxServer,
    ServiceProcess,
    docker_cli,
    front_network,
    nginx,
    service_process,
    tmpfs,
)

pytestmark = pytest.mark.docker
PASSPHRASE = "a long enough passphrase"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-manager` as an operator runs it on the host, with the service's settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DM_")}
    return subprocess.run(
        [sys.executable, "-m", "docker_manager", *args],
        env={**base, "DM_CONFIG": "/nonexistent/config.json", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def offline(folder: Path, data: Path | None = None) -> dict[str, str]:
    """Settings of a host whose service and nginx are not running (a restore's), all under `folder`:
    nothing of this machine's own nginx or data folder is read or written."""
    return {
        "DM_DATA_DIR": str(data or folder / "data"),
        "DM_PORT": "1",
        "DM_NGINX_CONF_DIRS": json.dumps([str(folder / "sites")]),
        "DM_NGINX_PID_FILE": str(folder / "nginx.pid"),
    }


def passphrase_file(folder: Path, text: str = PASSPHRASE, mode: int = 0o600) -> Path:
    path = folder / "passphrase"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


class Host:
    """One service process with its own nginx, on the shared engine."""

    def __init__(self, root: Path, stack: ExitStack, *, data: Path | None = None, **env: str) -> None:
        self.root = root
        self.contexts = root / "contexts"
        self.contexts.mkdir(parents=True, exist_ok=True)
        self.nginx: NginxServer = stack.enter_context(nginx(root / "nginx"))
        self.data = data or root / "data"
        self.env = {
            "DM_DATA_DIR": str(self.data),
            "DM_CONTEXT_ROOTS": json.dumps([str(self.contexts)]),
            "DM_SWITCH_DRAIN_SECONDS": "0",
            "DM_SWITCH_STOP_TIMEOUT": "1",
            **self.nginx.env(),
            **env,
        }
        self.service: ServiceProcess | None = None

    def start(self, stack: ExitStack, token: str | None = None, **env: str) -> ServiceProcess:
        settings = {k: v for k, v in self.env.items() if k != "DM_DATA_DIR"}
        self.service = stack.enter_context(
            service_process(self.data, stderr=self.root / "server.log", token=token, **settings, **env)
        )
        return self.service

    def call(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx2.Response:
        assert self.service is not None
        return httpx2.request(
            method, f"{self.service.url}{path}", headers=headers or self.service.headers, timeout=60, **kw
        )

    def task(self, started: httpx2.Response, timeout: float = 120) -> dict[str, Any]:
        assert started.status_code in (200, 202), started.text
        task_id = started.json()["task_id"]
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = self.call("GET", f"/tasks/status/{task_id}").json()
            if status["status"] not in ("queued", "running"):
                return status
            assert time.monotonic() < deadline, status
            time.sleep(0.1)

    def deploy(self, app: str, text: str, **body: Any) -> httpx2.Response:
        folder = self.contexts / f"{app}-{text}"
        folder.mkdir(exist_ok=True)
        (folder / "Dockerfile").write_text(
            f"FROM {BASE_IMAGE}\nRUN mkdir -p /www && echo {text} > /www/index.html\n"
            'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n'
        )
        return self.call("POST", f"/apps/{app}/deploy", json={"context": folder.name, **body})

    def site(self, domain: str) -> httpx2.Response:
        return httpx2.get(f"http://127.0.0.1:{self.nginx.port}/", headers={"Host": domain}, timeout=10)


def _issued(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [token for token in tokens if token["name"] != "bootstrap-admin"]


def _comparable(apps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(apps, key=lambda app: str(app["app_id"]))


def test_a_backup_taken_while_deploys_run_restores_into_a_new_folder(
    tmp_path: Path, base_image: str, unique: str
) -> None:
    app, other, domain = f"{unique}-shop", f"{unique}-side", f"{unique}.example.com"
    secret = passphrase_file(tmp_path)
    archive = tmp_path / "state.dmbackup"
    with ExitStack() as first:
        old = Host(tmp_path / "old", first)
        admin = old.start(first).token
        env = {"SHOP_SECRET": "sealed-value-1"}
        assert old.task(old.deploy(app, "v1", domain=domain, env=env))["status"] == "completed"
        assert (
            old.task(old.deploy(app, "v2", domain=domain, env={"SHOP_SECRET": "v2"}))["status"] == "completed"
        )
        created = old.call("POST", "/auth/tokens", json={"name": "ci-reader", "scopes": ["read"]})
        assert created.status_code == 201, created.text
        reader = {"Authorization": f"Bearer {created.json()['token']}"}
        finished = old.call("GET", f"/apps/{app}/releases").json()
        # While a deploy (its build) and a rollback run: a consistent online copy.
        building = old.deploy(other, "b1")
        rolling = old.call("POST", f"/apps/{app}/rollback", json={"release": 1})
        during = tmp_path / "during.dmbackup"
        made = cli("backup", str(during), "--passphrase-file", str(secret), env=old.env)
        assert made.returncode == 0, made.stderr
        assert old.task(building)["status"] == "completed"
        assert old.task(rolling)["status"] == "completed"
        # Once all is quiet, the backup the new host is made from (compared with what it served).
        assert cli("backup", str(archive), "--passphrase-file", str(secret), env=old.env).returncode == 0
        assert oct(archive.stat().st_mode & 0o777) == "0o600"
        assert old.site(domain).text.strip() == "v1"
        # Release 1 as it runs here (the rollback's container): what the new host must reproduce.
        serving = old.call("GET", f"/apps/{app}").json()["container_id"]
        original = json.loads(docker_cli("inspect", serving).stdout)[0]
        apps = _comparable(old.call("GET", "/apps").json())
        releases = old.call("GET", f"/apps/{app}/releases").json()
        tokens = old.call("GET", "/auth/tokens").json()
        audit = old.call("GET", "/audit", params={"limit": 500}).json()["entries"]
    for sealed in (during, archive):
        raw = sealed.read_bytes()  # sealed: not even the database's own header in clear
        assert b"SQLite format 3" not in raw and b"ci-reader" not in raw

    # The backup taken under load: a sound database holding every release finished before it.
    under_load = tmp_path / "under-load" / "data"
    restored = cli(
        "restore",
        str(during),
        "--passphrase-file",
        str(secret),
        env=offline(tmp_path / "under-load"),
    )
    assert restored.returncode == 0, restored.stderr
    with sqlite3.connect(under_load / "docker-manager.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        numbers = {row[0] for row in conn.execute("SELECT number FROM releases WHERE app_id = ?", (app,))}
    assert {r["release"] for r in finished} <= numbers

    with ExitStack() as second:
        new = Host(tmp_path / "new", second)
        restored = cli(
            "restore", str(archive), "--passphrase-file", str(secret), env={**new.env, "DM_PORT": "1"}
        )
        assert restored.returncode == 0, restored.stderr
        assert oct(new.data.stat().st_mode & 0o777) == "0o700"
        assert oct((new.data / "release-key").stat().st_mode & 0o777) == "0o600"
        new.start(second, token=admin)  # (the same DM_ADMIN_TOKEN: the same bootstrap token row)
        # The site was rendered for this host's nginx (another listener) and serves the same app.
        assert [p.name for p in new.nginx.sites.iterdir()] == [f"{app}.conf"], restored.stdout
        assert new.site(domain).text.strip() == "v1"
        assert _comparable(new.call("GET", "/apps").json()) == apps
        assert new.call("GET", f"/apps/{app}/releases").json() == releases
        # (DM_ADMIN_TOKEN's row is written again at every start: the others are the archive's)
        assert _issued(new.call("GET", "/auth/tokens").json()) == _issued(tokens)
        assert new.call("GET", "/apps", headers=reader).status_code == 200  # the token still works
        later = new.call("GET", "/audit", params={"limit": 1000}).json()["entries"]
        assert [e for e in later if e["request_id"] in {a["request_id"] for a in audit}] == audit
        # The release key came along: release 1's sealed env unseals on the new folder.
        again = new.task(new.call("POST", f"/apps/{app}/rollback", json={"release": 1}))
        assert again["status"] == "completed", again
        container = again["result"]["container_id"]
        inspected = json.loads(docker_cli("inspect", container).stdout)[0]
        assert "SHOP_SECRET=sealed-value-1" in inspected["Config"]["Env"]
        # ... and the whole config is release 1's (as it ran on the first host, inspected there).
        assert inspected["Image"] == original["Image"]
        for key in ("Cmd", "Entrypoint", "Env", "ExposedPorts", "WorkingDir", "User"):
            assert inspected["Config"][key] == original["Config"][key], key
        for key in ("Memory", "NanoCpus", "RestartPolicy", "LogConfig"):
            assert inspected["HostConfig"][key] == original["HostConfig"][key], key


@pytest.fixture
def small_state(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    """A data folder with a database and a token, its settings, a passphrase file and a backup."""
    env = offline(tmp_path)
    made = cli("token", "create", "-s", "read", "--name", "kept", env=env)
    assert made.returncode == 0, made.stderr
    secret = passphrase_file(tmp_path)
    archive = tmp_path / "state.dmbackup"
    assert cli("backup", str(archive), "--passphrase-file", str(secret), env=env).returncode == 0
    return env, secret, archive


def _refused(archive: Path, secret: Path, target: Path, *extra: str) -> str:
    done = cli(
        "restore",
        str(archive),
        "--passphrase-file",
        str(secret),
        *extra,
        env=offline(target.parent, target),
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    # Nothing written: no data folder, no unpacked copy left beside it.
    assert not target.exists() or not any(target.iterdir())
    assert not list(target.parent.glob(".dm-restore-*"))
    return done.stderr


def test_bad_archives_and_bad_hosts_are_refused_with_nothing_written(
    tmp_path: Path, small_state: tuple[dict[str, str], Path, Path]
) -> None:
    env, secret, archive = small_state
    target = tmp_path / "restored" / "data"
    target.parent.mkdir()
    raw = archive.read_bytes()
    wrong = tmp_path / "wrong"
    wrong.write_text("another passphrase entirely\n")
    assert "wrong passphrase" in _refused(archive, wrong, target)
    cut = tmp_path / "cut.dmbackup"
    cut.write_bytes(raw[: len(raw) // 2])
    assert "cut short" in _refused(cut, secret, target)
    flipped = tmp_path / "flipped.dmbackup"
    middle = len(raw) // 2
    flipped.write_bytes(raw[:middle] + bytes([raw[middle] ^ 0x01]) + raw[middle + 1 :])
    assert "damaged" in _refused(flipped, secret, target)
    not_ours = tmp_path / "other.tar"
    not_ours.write_bytes(b"\x1f\x8b" + os.urandom(200))
    assert "not a docker-manager backup" in _refused(not_ours, secret, target)
    # An archive a newer version wrote (its schema revision unknown here).
    newer = tmp_path / "newer.dmbackup"
    _rewrite_manifest(archive, newer, {"schema_revision": "0099", "version": "9.0.0"})
    message = _refused(newer, secret, target)
    assert "0099" in message and "newer" in message
    # A member a backup never holds (a path out of the folder), a file that is also a folder, a
    # PAX header (tarfile's own parser is never given one: CVE-2024-6232), a symbolic link.
    for members, expected in (
        ([("../../etc/cron.d/evil", b"* * * * * root id\n")], "not a member a backup holds"),
        ([("acme/x", b"1"), ("acme/x/y", b"2")], "not a member a backup holds"),
        ([("acme/" + "a" * 120, b"1")], "not a plain file"),
        ([("acme/link", None)], "not a plain file"),
    ):
        with newer.open("wb") as out:
            _forged(out, members)
        assert expected in _refused(newer, secret, target), members
    # A data folder that holds files is not replaced without --force, and is left as it was.
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    done = cli(
        "restore",
        str(archive),
        "--passphrase-file",
        str(secret),
        env=offline(tmp_path / "occupied-host", occupied),
    )
    assert done.returncode == 2 and "not empty" in done.stderr
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    # A passphrase others can read is refused for a new backup; a short one too.
    loose = passphrase_file(tmp_path / "restored", mode=0o644)
    assert (
        "chmod 600"
        in cli("backup", str(tmp_path / "x.dmbackup"), "--passphrase-file", str(loose), env=env).stderr
    )
    short = passphrase_file(tmp_path / "restored", text="short", mode=0o600)
    assert (
        "12 characters"
        in cli("backup", str(tmp_path / "x.dmbackup"), "--passphrase-file", str(short), env=env).stderr
    )
    assert not (tmp_path / "x.dmbackup").exists()
    nowhere = cli("backup", "/proc/x.dmbackup", "--passphrase-file", str(secret), env=env)
    assert (
        nowhere.returncode == 2 and nowhere.stderr.startswith("error: ") and "Traceback" not in nowhere.stderr
    )
    # --force keeps the replaced folder aside.
    done = cli(
        "restore",
        str(archive),
        "--passphrase-file",
        str(secret),
        "--force",
        env=offline(tmp_path / "occupied-host", occupied),
    )
    assert done.returncode == 0, done.stderr
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("occupied.before-restore-")]
    assert len(aside) == 1 and (aside[0] / "keep.txt").read_text() == "mine"
    listed = cli("token", "list", env=offline(tmp_path / "occupied-host", occupied))
    assert "kept" in listed.stdout
    # Last (a host where tmpfs cannot be mounted skips only this): a disk too small for it, and a
    # backup whose database copy would fill its disk.
    with tmpfs(tmp_path / "small", "4m") as small:
        message = _refused(archive, secret, small / "data")
        assert "not enough room" in message
        assert cli("token", "create", "-s", "read", env=offline(small)).returncode == 0
        full = cli(
            "backup", str(tmp_path / "x.dmbackup"), "--passphrase-file", str(secret), env=offline(small)
        )
        assert full.returncode == 2 and "not enough room to copy the database" in full.stderr


def test_an_archive_of_an_older_schema_is_migrated_by_the_restore(tmp_path: Path) -> None:
    from alembic import command

    from docker_manager.db.engine import alembic_config, schema_revisions

    data = tmp_path / "old" / "data"
    data.mkdir(parents=True, mode=0o700)
    config = alembic_config(f"sqlite:///{data / 'docker-manager.db'}")
    command.upgrade(config, "0005")  # as a version from before the audit log left it
    secret = passphrase_file(tmp_path)
    archive = tmp_path / "old.dmbackup"
    made = cli("backup", str(archive), "--passphrase-file", str(secret), env=offline(tmp_path / "old", data))
    assert made.returncode == 0 and "schema 0005" in made.stdout, made.stderr
    target = tmp_path / "new" / "data"
    done = cli(
        "restore", str(archive), "--passphrase-file", str(secret), env=offline(tmp_path / "new", target)
    )
    assert done.returncode == 0, done.stderr
    assert f"0005 -> {schema_revisions()[-1]}" in done.stdout
    with sqlite3.connect(target / "docker-manager.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (schema_revisions()[-1],)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.postgres
@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"), reason="PostgreSQL: scripts/test.sh's second pass"
)
def test_a_postgresql_database_is_dumped_and_restored(tmp_path: Path) -> None:
    from docker_manager.adapters.database_dump import postgres_env

    server = os.environ["TEST_DATABASE_URL"].rsplit("/", 1)[0]
    name = f"dm_backup_{os.getpid()}"
    admin = {**postgres_env(f"{server}/postgres")}

    def psql(sql: str) -> None:
        subprocess.run(["psql", "-q", "-c", sql], env=admin, check=True, capture_output=True)

    psql(f"DROP DATABASE IF EXISTS {name}")
    psql(f"CREATE DATABASE {name}")
    try:
        env = {**offline(tmp_path / "a"), "DM_DATABASE_URL": f"{server}/{name}"}
        assert cli("token", "create", "-s", "read", "--name", "kept", env=env).returncode == 0
        secret = passphrase_file(tmp_path)
        archive = tmp_path / "pg.dmbackup"
        made = cli("backup", str(archive), "--passphrase-file", str(secret), env=env)
        assert made.returncode == 0, made.stderr
        assert cli("token", "create", "-s", "read", "--name", "after", env=env).returncode == 0
        fresh = {**env, "DM_DATA_DIR": str(tmp_path / "b" / "data")}
        refused = cli("restore", str(archive), "--passphrase-file", str(secret), env=fresh)
        assert refused.returncode == 2 and "holds tables" in refused.stderr
        done = cli("restore", str(archive), "--passphrase-file", str(secret), "--force", env=fresh)
        assert done.returncode == 0, done.stderr
        listed = cli("token", "list", env=fresh).stdout
        assert "kept" in listed and "after" not in listed
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _forged(
    out: Any, members: list[tuple[str, bytes | None]], manifest: dict[str, Any] | None = None
) -> None:
    """An archive sealed with the right passphrase holding whatever an attacker put in it."""
    import io
    import tarfile

    import lz4.frame

    sealed = SealingWriter(out, PASSPHRASE.encode())
    with lz4.frame.open(sealed, "wb") as compressed, tarfile.open(fileobj=compressed, mode="w|") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:  # a symbolic link to the host's root
                info.type, info.linkname = tarfile.SYMTYPE, "/"
                tar.addfile(info)
                continue
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if manifest is not None:
            document = json.dumps(manifest).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(document)
            tar.addfile(info, io.BytesIO(document))
    sealed.close()


def _rewrite_manifest(archive: Path, target: Path, changes: dict[str, Any]) -> None:
    """The same members with a changed manifest, sealed again (as a newer version would write)."""
    from docker_manager.services.backups.archive import read_archive

    members: dict[str, bytes] = {}

    class Collect:
        def __init__(self, name: str) -> None:
            self.name, self.data = name, b""

        def write(self, data: bytes) -> int:
            self.data += data
            return len(data)

        def close(self) -> None:
            members[self.name] = self.data

    with archive.open("rb") as source:
        manifest = read_archive(source, PASSPHRASE.encode(), Collect)  # type: ignore[arg-type]
    document = json.loads(manifest.as_json())
    document.update(changes)
    with target.open("wb") as out:
        _forged(out, list(members.items()), document)


def test_the_api_streams_a_backup_and_the_schedule_keeps_its_newest(tmp_path: Path) -> None:
    secret = passphrase_file(tmp_path)
    folder = tmp_path / "backups"
    with ExitStack() as stack:
        service = stack.enter_context(
            service_process(
                tmp_path / "data",
                DM_BACKUP_DIR=str(folder),
                DM_BACKUP_PASSPHRASE_FILE=str(secret),
                DM_BACKUP_KEEP="2",
                DM_NGINX_CONF_DIRS=json.dumps([str(tmp_path / "sites")]),
            )
        )
        url, admin = service.url, service.headers
        streamed = httpx2.post(
            f"{url}/system/backup", json={"passphrase": "another long passphrase"}, headers=admin, timeout=60
        )
        assert streamed.status_code == 200, streamed.text
        assert streamed.headers["content-disposition"].startswith("attachment;")
        download = tmp_path / "download.dmbackup"
        download.write_bytes(streamed.content)
        (tmp_path / "other").mkdir()
        other = passphrase_file(tmp_path / "other", text="another long passphrase")
        checked = cli(
            "restore",
            str(download),
            "--passphrase-file",
            str(other),
            "--check-only",
            env=offline(tmp_path / "x"),
        )
        assert checked.returncode == 0 and checked.stdout.startswith("ok:"), checked.stderr
        # Without a body: the configured passphrase. Refused: a short one, a read token.
        assert httpx2.post(f"{url}/system/backup", headers=admin, timeout=60).status_code == 200
        short = httpx2.post(f"{url}/system/backup", json={"passphrase": "short"}, headers=admin, timeout=60)
        assert short.status_code == 422
        created = httpx2.post(
            f"{url}/auth/tokens", json={"name": "r", "scopes": ["read"]}, headers=admin, timeout=30
        )
        assert created.status_code == 201, created.text
        reader = {"Authorization": f"Bearer {created.json()['token']}"}
        assert httpx2.post(f"{url}/system/backup", headers=reader, timeout=60).status_code == 403
        # The first scheduled backup runs at start.
        deadline = time.monotonic() + 30
        while (status := httpx2.get(f"{url}/system/backups", headers=reader, timeout=30).json())[
            "last_at"
        ] is None:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status["enabled"] and status["last_size_bytes"] > 0 and status["last_error"] is None
        written = folder / status["last_file"]
        assert oct(written.stat().st_mode & 0o777) == "0o600"
        with httpx2.Client(base_url=url, timeout=30, headers={"Origin": url}) as browser:
            browser.post("/ui/login", data={"token": service.token})
            card = browser.get("/ui").text.split('id="backups"', 1)[1].split("</section>", 1)[0]
            assert "None written yet" not in card and "Last:" in card and "failed" not in card
        metrics = httpx2.get(f"{url}/metrics", headers=admin, timeout=30).text
        assert (
            "dm_backup_last_size_bytes" in metrics
            and 'dm_backups_total{result="ok",trigger="api"}' in metrics
        )


def test_scheduled_backups_keep_the_newest_and_a_failure_is_audited(tmp_path: Path) -> None:
    import asyncio

    from docker_manager import metrics
    from docker_manager.config import Settings
    from docker_manager.db import Database
    from docker_manager.services.backups.options import BackupOptions
    from docker_manager.services.backups.service import BackupService
    from docker_manager.services.observability.audit import AuditLog

    assert cli("token", "create", "-s", "read", env=offline(tmp_path)).returncode == 0
    secret = passphrase_file(tmp_path)
    settings = Settings(
        nginx_conf_dirs=[tmp_path / "sites"],
        data_dir=tmp_path / "data",
        backup_dir=tmp_path / "b",
        backup_passphrase_file=secret,
        backup_keep=2,
    )

    def failures() -> float:
        labels = {"trigger": "schedule", "result": "error"}
        return metrics.REGISTRY.get_sample_value("dm_backups_total", labels) or 0.0

    failed_before = failures()

    async def three_then_a_failure() -> tuple[list[str], Any, list[Any]]:
        db = Database(settings.sqlalchemy_url)
        audit = AuditLog(db.engine)
        try:
            backups = BackupService(options=BackupOptions.of(settings), audit=audit)
            for _ in range(3):
                await backups.run_scheduled()
            kept = [file.name for file in (await backups.status()).files]
            secret.chmod(0o644)  # now refused: the run fails, the service goes on
            await backups.run_scheduled()
            entries, _ = await audit.page(routes=["scheduled backup"])
            return kept, await backups.status(), entries
        finally:
            await db.engine.dispose()

    kept, status, entries = asyncio.run(three_then_a_failure())
    assert len(kept) == 2 and sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(kept)
    assert status.last_error and "chmod 600" in status.last_error and status.last_file == kept[0]
    assert [(e.error_code, e.status) for e in entries] == [("backup_failed", 500)]
    assert "chmod 600" in entries[0].target["reason"]
    assert failures() == failed_before + 1


# The last version before the certificates' migration (schema 0008): an upgrade that migrates.
EARLIER_VERSION = "9fd5927"


def _earlier_source(folder: Path) -> Path:
    """That version's `src/`, from this checkout's history (skipped in a checkout without it)."""
    root = Path(__file__).resolve().parents[2]
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", EARLIER_VERSION, "src"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        pytest.skip(f"version {EARLIER_VERSION} is not in this checkout's history")
    folder.mkdir()
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src"


@pytest.mark.parametrize("started_by", ["this version", "an earlier version"])
def test_an_upgrade_restart_under_a_request_loop_fails_no_request(
    tmp_path: Path, base_image: str, unique: str, started_by: str
) -> None:
    app, domain = f"{unique}-up", f"{unique}-up.example.com"
    network = front_network()  # (the same one after the restart: it is the fronts' setting)
    earlier = started_by == "an earlier version"
    with ExitStack() as stack:
        host = Host(tmp_path, stack, DM_SWITCH_FRONT_NETWORK=network)
        host.start(stack, PYTHONPATH=str(_earlier_source(tmp_path / "earlier")) if earlier else "")
        assert host.task(host.deploy(app, "steady", domain=domain))["status"] == "completed"
        if earlier:
            with sqlite3.connect(host.data / "docker-manager.db") as conn:
                assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0008",)
        rules_before = _rules(network.rsplit(".", 2)[0] + ".")
        assert rules_before, "the site has a kernel front (DM_SWITCH_MODE auto on this host)"
        site_before = (host.nginx.sites / f"{app}.conf").read_bytes()
        failures: list[str] = []
        answers: list[int] = []
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    answer = host.site(domain)
                    answers.append(answer.status_code)
                    if answer.status_code != 200 or answer.text.strip() != "steady":
                        failures.append(f"HTTP {answer.status_code}")
                except httpx2.HTTPError as exc:
                    failures.append(type(exc).__name__)
                time.sleep(0.01)

        thread = threading.Thread(target=loop)
        thread.start()
        try:
            time.sleep(0.5)
            assert host.service is not None
            token, port = host.service.token, host.service.url.rsplit(":", 1)[1]
            host.service.process.terminate()
            host.service.process.wait(timeout=30)
            during = len(answers)
            time.sleep(0.5)
            with service_process(
                host.data,
                port=int(port),
                token=token,
                **{k: v for k, v in host.env.items() if k != "DM_DATA_DIR"},
            ) as again:
                shown = httpx2.get(f"{again.url}/apps/{app}/releases", headers=again.headers, timeout=30)
                assert shown.status_code == 200 and [r["status"] for r in shown.json()] == ["live"]
                time.sleep(0.5)
        finally:
            stop.set()
            thread.join()
        assert failures == [] and len(answers) > during > 10, failures[:5]
        assert _rules(network.rsplit(".", 2)[0] + ".") == rules_before
        if earlier:  # migrated, from every row
            with sqlite3.connect(host.data / "docker-manager.db") as conn:
                assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (
                    schema_revisions()[-1],
                )
        else:  # (a version may render its sites differently; the same one leaves them be)
            assert (host.nginx.sites / f"{app}.conf").read_bytes() == site_before


def _rules(fragment: str) -> list[str]:
    listed = subprocess.run(
        ["iptables", "-w", "5", "-t", "nat", "-S"], capture_output=True, text=True, check=False
    )
    return sorted(line for line in listed.stdout.splitlines() if fragment in line)


@pytest.fixture(autouse=True)
def _no_stray_data(tmp_path: Path) -> Iterator[None]:
    yield
    assert not list(tmp_path.rglob(".backup-*")), "a backup's staging folder was left behind"
