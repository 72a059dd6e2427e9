"""`GET /system/doctor` and `docker-manager doctor` on a real host: a healthy one passes; nginx
stopped, a read-only folder, a full small disk and an admin token file others can read are each
named with their fix. `scripts/lib.sh`'s ensure_nginx (what serve.sh runs) brings a stopped nginx
back, and a deploy with a domain answers through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.harness import NginxServer, ServiceProcess, service_with_nginx

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Two small filesystems: `full` (256 KiB, filled up) and `readonly`."""
    mounts = {"full": tmp_path / "full", "readonly": tmp_path / "readonly"}
    for name, path in mounts.items():
        path.mkdir()
        options = "size=256k" + (",ro" if name == "readonly" else "")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    (mounts["full"] / "filler").write_bytes(b"\0" * (250 * 1024))
    try:
        yield mounts
    finally:
        for path in mounts.values():
            subprocess.run(["umount", "-l", str(path)], check=False)


def doctor(process: ServiceProcess) -> dict[str, Any]:
    answer = httpx2.get(f"{process.url}/system/doctor", headers=process.headers, timeout=60)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def cli_doctor(process: ServiceProcess, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DM_")}
    env |= {"HOME": str(home), "DM_URL": process.url, "DM_TOKEN": process.headers["Authorization"][7:]}
    return subprocess.run(
        [sys.executable, "-m", "docker_manager", "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def stop(web: NginxServer) -> None:
    subprocess.run(["nginx", "-p", str(web.prefix), "-c", str(web.conf), "-s", "quit"], check=True)
    deadline = time.monotonic() + 10
    while web.pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_healthy_host_then_each_problem_with_its_fix(
    tmp_path: Path, tmpfs: dict[str, Path], unique: str, base_image: str
) -> None:
    (tmp_path / "healthy").mkdir()
    with service_with_nginx(tmp_path / "healthy", DM_MIN_FREE_BYTES=str(1 << 20)) as (process, web, contexts):
        report = doctor(process)
        assert report["ok"], [c for c in report["checks"] if not c["ok"]]
        names = {check["name"] for check in report["checks"]}
        assert {"engine", "nginx", "folders", "disk data", "database", "clock", "data folder"} <= names
        shown = cli_doctor(process, tmp_path)
        assert shown.returncode == 0 and "all checks pass" in shown.stdout, shown.stdout + shown.stderr

        # What serve.sh does: a stopped nginx is started again, and a deploy with a domain answers.
        stop(web)
        assert "nginx" in {c["name"] for c in doctor(process)["checks"] if not c["ok"]}
        started = subprocess.run(
            ["bash", "-c", f"source {ROOT}/scripts/lib.sh && ensure_nginx"],
            env={**os.environ, **{k: v for k, v in web.env().items() if k != "DM_NGINX_CONF_DIRS"}},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert started.returncode == 0 and "starting nginx" in started.stdout, started.stdout + started.stderr
        assert web.pid_file.exists()
        assert "nginx" not in {c["name"] for c in doctor(process)["checks"] if not c["ok"]}
        app = unique
        domain = f"{app}.example.com"
        folder = contexts / app
        folder.mkdir()
        (folder / "Dockerfile").write_text(
            f"FROM {base_image}\nRUN mkdir -p /www && echo up > /www/index.html\n"
            'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n'
        )
        body = {"context": app, "domain": domain}
        deployed = httpx2.post(
            f"{process.url}/apps/{app}/deploy", headers=process.headers, json=body, timeout=60
        )
        assert deployed.status_code == 202, deployed.text
        task = deployed.json()["task_id"]
        deadline = time.monotonic() + 120
        status_url = f"{process.url}/tasks/status/{task}"
        while (status := httpx2.get(status_url, headers=process.headers).json())["status"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status["status"] == "completed", json.dumps(status)[:2000]
        page = httpx2.get(f"http://127.0.0.1:{web.port}/", headers={"Host": domain}, timeout=10)
        assert page.text.strip() == "up"
        # A site file whose header was edited by hand: the service no longer sees it, doctor says so.
        checks = {check["name"]: check for check in doctor(process)["checks"]}
        assert checks["sites"]["ok"] and "1 managed site file" in checks["sites"]["detail"], checks["sites"]
        site_file = web.sites / f"{app}.conf"
        original = site_file.read_text()
        site_file.write_text(original.replace(" port=", " port=x", 1))
        try:
            shown = cli_doctor(process, tmp_path, "--json")
        finally:
            site_file.write_text(original)
        assert shown.returncode == 1, shown.stdout + shown.stderr
        failed = {check["name"]: check for check in json.loads(shown.stdout)["checks"] if not check["ok"]}
        assert list(failed) == ["sites"], failed
        assert str(site_file) in failed["sites"]["detail"] and "re-create the site" in failed["sites"]["fix"]

    broken = tmp_path / "broken"
    broken.mkdir()
    env = {"DM_BUILDS_DIR": str(tmpfs["full"]), "DM_UPLOAD_ROOT": str(tmpfs["readonly"])}
    with service_with_nginx(broken, DM_MIN_FREE_BYTES=str(1 << 20), **env) as (process, web, _):
        token_file = broken / "data" / "admin-token"
        token_file.write_text("dm_not-a-real-token\n")
        token_file.chmod(0o644)
        stop(web)
        report = doctor(process)
        failed = {check["name"]: check for check in report["checks"] if not check["ok"]}
        assert not report["ok"]
        assert "start nginx" in failed["nginx"]["fix"]
        assert str(tmpfs["readonly"]) in failed["folders"]["detail"]
        assert "free space" in failed["disk builds"]["fix"]
        assert failed["admin token file"]["fix"] == f"chmod 600 {token_file.resolve()}"
        assert f"port {web.port}" in failed and "nothing listens" in failed[f"port {web.port}"]["detail"]
        assert {"engine", "database", "clock", "data folder"}.isdisjoint(failed)
        shown = cli_doctor(process, tmp_path)
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert "FAIL  nginx" in shown.stdout and "fix: start nginx" in shown.stdout
        assert "fix: chmod 600" in shown.stdout
