"""The html-site pipeline against a local git repository and a real registry with htpasswd auth."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from docker_manager.config import Settings
from tests.harness import Registry, app_client, docker_cli, free_port, registry, wait_final

pytestmark = pytest.mark.docker
ADMIN = {"Authorization": "Bearer pipeline-admin"}
WEB_IMAGE = "dm-test-web:latest"


@pytest.fixture(scope="module")
def registry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with registry(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture(scope="module")
def web_image(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Stands in for nginx:alpine (nothing can be pulled here): serves /usr/share/nginx/html."""
    context = tmp_path_factory.mktemp("web-image")
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN mkdir -p /usr/share/nginx/html\n"
        'CMD ["httpd", "-f", "-p", "80", "-h", "/usr/share/nginx/html"]\n'
    )
    docker_cli("build", "-q", "-t", WEB_IMAGE, str(context))
    return WEB_IMAGE


def make_repo(root: Path, name: str, text: str, dockerfile: str | None = None) -> Path:
    repo = root / name
    repo.mkdir(parents=True)
    (repo / "index.html").write_text(f"<h1>{text}</h1>\n")
    if dockerfile:
        (repo / "Dockerfile").write_text(dockerfile)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "site"], check=True)
    return repo


@pytest.fixture
async def app(tmp_path: Path, settings: Settings, web_image: str) -> AsyncIterator[httpx2.AsyncClient]:
    config = Settings(
        data_dir=tmp_path / "data",
        admin_token="pipeline-admin",  # type: ignore[arg-type]
        git_local_roots=[tmp_path / "repos"],
        pipeline_base_image=web_image,
        pipeline_probe_timeout=10,
    )
    (tmp_path / "repos").mkdir()
    async with app_client(config, timeout=300) as (_services, client):
        yield client


def body(registry_server: Registry, repo: Path, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "repo_url": str(repo),
        "dockerhub_repo": f"{registry_server.address}/team/{name}",
        "tag": "v1",
        "host_port": free_port(),
        "dockerhub_username": registry_server.username,
        "dockerhub_password": registry_server.password,
        **extra,
    }


async def test_the_whole_pipeline_end_to_end(
    app: httpx2.AsyncClient, registry_server: Registry, tmp_path: Path, unique: str
) -> None:
    repo = make_repo(tmp_path / "repos", "site", f"hello from {unique}")
    request = body(registry_server, repo, unique)
    response = await app.post("/pipeline/html-site", json=request, headers=ADMIN)
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["status"] == "ok"
    assert summary["repo_tag"] == f"{registry_server.address}/team/{unique}:v1"
    assert f"hello from {unique}" in summary["probe"]["body_head"] and summary["probe"]["status_code"] == 200
    assert set(summary["stages"]) == {"clone", "build", "login", "push", "pull", "run"}
    assert summary["stages"]["build"]["dockerfile_generated"] is True
    # The original's keys: run {id, name, status}, clone {exit_code, stdout, stderr}.
    assert summary["run"]["status"] == "running" and summary["run"]["id"] == summary["run"]["container_id"]
    assert summary["run"]["name"] and summary["stages"]["clone"]["exit_code"] == 0
    assert {"stdout", "stderr"} <= set(summary["stages"]["clone"])
    # The site really runs on the host port, and the registry really holds the image.
    async with httpx2.AsyncClient() as web:
        assert f"hello from {unique}" in (await web.get(f"http://127.0.0.1:{request['host_port']}/")).text
        tags = await web.get(
            f"http://{registry_server.address}/v2/team/{unique}/tags/list",
            auth=(registry_server.username, registry_server.password),
        )
    assert tags.json()["tags"] == ["v1"]
    status = await wait_final(app, ADMIN, summary["task_id"])
    steps = [(e["stage"], e["status"]) for e in status["events"] if e["stage"]]
    for stage in ("clone", "build", "login", "push", "pull", "run", "probe"):
        assert (stage, "starting") in steps and (stage, "completed") in steps, stage
    assert registry_server.password not in json.dumps(status)
    logs = (await app.get(f"/tasks/logs/{summary['task_id']}", params={"tail": 500}, headers=ADMIN)).text
    assert registry_server.password not in logs
    leftovers = [
        p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(summary["task_id"])
    ]
    assert leftovers == []  # the clone's temporary folder is gone
    docker_cli("rm", "-f", summary["run"]["container_id"])


async def test_wrong_credentials_stop_at_login(
    app: httpx2.AsyncClient, registry_server: Registry, tmp_path: Path, unique: str
) -> None:
    repo = make_repo(tmp_path / "repos", "site", "x")
    request = body(registry_server, repo, unique, dockerhub_password="not-the-password", task_id=unique)
    started = await app.post("/pipeline/html-site/start", json=request, headers=ADMIN)
    assert started.status_code == 200 and started.json()["status"] == "started"
    assert started.json()["task_id"] == unique  # the original's own task_id field
    status = await wait_final(app, ADMIN, started.json()["task_id"])
    assert status["status"] == "error" and status["stage"] == "login"
    stages = {e["stage"] for e in status["events"]}
    assert "push" not in stages and "run" not in stages
    assert "not-the-password" not in json.dumps(status)
    again = await app.post("/pipeline/html-site", json=request, headers=ADMIN)
    assert again.status_code == 409 and again.json()["field"] == "task_id"  # that id is taken now
    sync = await app.post("/pipeline/html-site", json={**request, "task_id": None}, headers=ADMIN)
    assert sync.status_code == 422 and sync.json()["stage"] == "login"


async def test_the_repositorys_own_dockerfile_is_used_and_a_rerun_replaces_the_container(
    app: httpx2.AsyncClient, registry_server: Registry, tmp_path: Path, unique: str, web_image: str
) -> None:
    dockerfile = (
        f"FROM {web_image}\nCOPY index.html /usr/share/nginx/html/index.html\n"
        "RUN echo own-dockerfile > /usr/share/nginx/html/marker.txt\n"
    )
    repo = make_repo(tmp_path / "repos", "own", f"own {unique}", dockerfile)
    request = body(registry_server, repo, f"{unique}-own")
    first = (await app.post("/pipeline/html-site", json=request, headers=ADMIN)).json()
    assert first["stages"]["build"]["dockerfile_generated"] is False
    async with httpx2.AsyncClient() as web:
        marker = await web.get(f"http://127.0.0.1:{request['host_port']}/marker.txt")
    assert marker.text.strip() == "own-dockerfile"
    second = (await app.post("/pipeline/html-site", json=request, headers=ADMIN)).json()
    assert second["status"] == "ok"
    assert docker_cli("inspect", first["run"]["container_id"], check=False).returncode != 0
    docker_cli("rm", "-f", second["run"]["container_id"])


@pytest.mark.parametrize(
    "repo_url",
    [
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/pwned",
        "-oProxyCommand=touch /tmp/pwned",
        "ssh://-oProxyCommand=touch%20/tmp/pwned/x",
        "file:///etc",
        "/etc",
        "fd::3",
        "http://169.254.169.254/",
        "http://127.0.0.1:2375/",
        "https://a.example.com/r\nx",
        "https://" + "a" * 3000,
        "git://example.com/r",
        "a-relative/path",
        "",
    ],
)
async def test_hostile_repo_urls_are_refused(
    app: httpx2.AsyncClient, registry_server: Registry, repo_url: str
) -> None:
    request = {
        "repo_url": repo_url,
        "dockerhub_repo": f"{registry_server.address}/team/x",
        "dockerhub_username": "u",
        "dockerhub_password": "p",
    }
    for route in ("/pipeline/html-site", "/pipeline/html-site/start"):
        response = await app.post(route, json=request, headers=ADMIN)
        # A local path outside DM_GIT_LOCAL_ROOTS is 403 path_not_allowed; every other form 422.
        expected = 403 if repo_url in ("file:///etc", "/etc") else 422
        assert response.status_code == expected, (repo_url, response.text)
    assert not Path("/tmp/pwned").exists()
    assert (await app.get("/tasks", params={"type": "html_site_pipeline"}, headers=ADMIN)).json()[
        "tasks"
    ] == []


async def test_hostile_repository_names_are_refused(app: httpx2.AsyncClient) -> None:
    for name in ("user/repo; rm", "..", "UPPER/case", "a b", "-x/y"):
        response = await app.post(
            "/pipeline/html-site",
            headers=ADMIN,
            json={"repo_url": "https://example.com/r", "dockerhub_repo": name},
        )
        assert response.status_code == 422, name
