"""`POST /apps/{app_id}/deploy` against a real server process, its own nginx and the real engine:
a deploy under a request loop, every way one can fail or be cancelled, concurrent deploys of one
app, the sources, and the same-host path that neither exports nor loads."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.harness import (
    BASE_IMAGE,
    NginxServer,
    ServiceProcess,
    docker_cli,
    registry,
    service_with_nginx,
)

pytestmark = pytest.mark.docker


@dataclass
class Lab:
    service: ServiceProcess
    nginx: NginxServer
    contexts: Path
    root: Path

    def deploy(self, app_id: str, body: dict[str, Any], *, wait: bool = True) -> dict[str, Any]:
        started = httpx2.post(
            f"{self.service.url}/apps/{app_id}/deploy", json=body, headers=self.service.headers, timeout=60
        )
        assert started.status_code == 202, started.text
        task_id = str(started.json()["task_id"])
        return self.final(task_id) if wait else {"task_id": task_id}

    def deploy_as(self, app_id: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """A deploy by another token: its refusal at once, or its task's end."""
        started = httpx2.post(
            f"{self.service.url}/apps/{app_id}/deploy", json=body, headers=headers, timeout=60
        )
        if started.status_code != 202:
            return {"status": "error", "code": started.status_code, "error": started.text}
        return self.final(str(started.json()["task_id"]))

    def final(self, task_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = httpx2.get(
                f"{self.service.url}/tasks/status/{task_id}", headers=self.service.headers, timeout=30
            ).json()
            if status["status"] not in ("queued", "running"):
                return status
            assert time.monotonic() < deadline, f"task {task_id} still {status['status']}"
            time.sleep(0.1)

    def at_stage(self, task_id: str, stage: str) -> dict[str, Any] | None:
        """The task's status once it runs `stage` (a build's own steps say `building`), else None."""
        status: dict[str, Any] = httpx2.get(
            f"{self.service.url}/tasks/status/{task_id}", headers=self.service.headers, timeout=30
        ).json()
        here = status["stage"] in (stage, "building" if stage == "build" else stage)
        return status if status["status"] == "running" and here else None

    def app(self, app_id: str) -> dict[str, Any]:
        answer = httpx2.get(f"{self.service.url}/apps/{app_id}", headers=self.service.headers, timeout=30)
        return dict(answer.json()) if answer.status_code == 200 else {}

    def releases(self, app_id: str) -> list[dict[str, Any]]:
        answer = httpx2.get(
            f"{self.service.url}/apps/{app_id}/releases", headers=self.service.headers, timeout=30
        )
        return list(answer.json()) if answer.status_code == 200 else []

    def site(self, domain: str) -> httpx2.Response:
        return httpx2.get(f"http://127.0.0.1:{self.nginx.port}/", headers={"Host": domain}, timeout=10)

    def context(self, name: str, text: str, *, extra: str = "") -> str:
        folder = self.contexts / name
        folder.mkdir(exist_ok=True)
        (folder / "Dockerfile").write_text(
            f"FROM {BASE_IMAGE}\n{extra}RUN mkdir -p /www && echo {text} > /www/index.html\n"
            'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n'
        )
        return name


def stages(status: dict[str, Any]) -> list[str]:
    """The deploy's own stages, in the order they started."""
    known = ("build", "pull", "load", "run", "health", "switch", "retire", "export")
    return [e["stage"] for e in status["events"] if e["status"] == "starting" and e["stage"] in known]


def running_of(app_id: str) -> list[str]:
    listed = docker_cli(
        "ps", "-q", "--filter", f"label=docker-manager.app_id={app_id}", "--filter", "status=running"
    )
    return listed.stdout.split()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("deploys")
    (root / "repos").mkdir()
    with service_with_nginx(root, DM_GIT_LOCAL_ROOTS=json.dumps([str(root / "repos")])) as (
        service,
        web,
        contexts,
    ):
        yield Lab(service, web, contexts, root)


@dataclass
class Loop:
    """Clients that keep asking for a domain through nginx, never retrying: every answer counted."""

    lab: Lab
    domain: str
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[tuple[int, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run(self) -> None:
        with httpx2.Client(timeout=5) as client:
            while not self.stop.is_set():
                try:
                    answer = client.get(
                        f"http://127.0.0.1:{self.lab.nginx.port}/", headers={"Host": self.domain}
                    )
                    self.answers.append((answer.status_code, answer.text.strip()))
                    if answer.status_code != 200:
                        self.failures.append(f"HTTP {answer.status_code}")
                except httpx2.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                time.sleep(0.005)


def test_a_deploy_with_a_domain_under_load_fails_no_request(lab: Lab, unique: str) -> None:
    app, domain = f"{unique}-shop", f"{unique}.example.com"
    first = lab.deploy(app, {"context": lab.context(app, "v1"), "domain": domain})
    assert first["status"] == "completed", first
    assert stages(first) == ["build", "run", "health", "switch", "retire"]
    assert lab.site(domain).text.strip() == "v1"
    old_container = first["result"]["container_id"]
    loop = Loop(lab, domain)
    threads = [threading.Thread(target=loop.run) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        second = lab.deploy(app, {"context": lab.context(app, "v2"), "domain": domain, "drain_seconds": 1})
        time.sleep(0.5)
    finally:
        loop.stop.set()
        for thread in threads:
            thread.join()
    assert second["status"] == "completed", second
    assert loop.failures == [] and len(loop.answers) > 50, loop.failures[:5]
    assert {text for _, text in loop.answers} <= {"v1", "v2"} and loop.answers[-1] == (200, "v2")
    releases = lab.releases(app)
    assert [r["release"] for r in releases] == [2, 1] and releases[0]["status"] == "live"
    assert releases[0]["source"] == "deploy" and releases[0]["task_id"] == second["task_id"]
    # The previous container was retired after the drain (stopped, kept for a rollback).
    state = json.loads(docker_cli("inspect", old_container).stdout)[0]["State"]
    assert state["Running"] is False
    assert running_of(app) == [second["result"]["container_id"][:12]]


def test_a_failing_step_leaves_the_previous_release_serving(lab: Lab, unique: str) -> None:
    app, domain = f"{unique}-blog", f"{unique}-blog.example.com"
    good = lab.deploy(app, {"context": lab.context(app, "good"), "domain": domain})
    assert good["status"] == "completed", good
    live = good["result"]["container_id"]
    failing = {
        # The new version never answers as required: it is stopped, kept, and never live.
        "health": {
            "context": lab.context(f"{app}-h", "bad"),
            "domain": domain,
            "health": {"path": "/missing", "expected_status": 200, "timeout": 2},
        },
        "build": {"context": lab.context(f"{app}-b", "bad", extra="RUN false\n"), "domain": domain},
        # Not on this host, and no registry answers for it here.
        "pull": {"image": "dm-test-no-such-image:never", "domain": domain},
    }
    for stage, body in failing.items():
        ended = lab.deploy(app, body)
        assert ended["status"] == "error" and ended["stage"] == stage, (stage, ended)
        assert ended["error"].startswith(f"{stage}:") or stage in ended["error"], ended["error"]
        assert lab.site(domain).text.strip() == "good"
        assert [r["release"] for r in lab.releases(app)] == [1]
        assert lab.app(app)["live_release"] == 1 and lab.app(app)["container_id"] == live
        assert running_of(app) == [live[:12]]


def test_nginx_gone_during_a_deploy_never_leaves_it_half_done(lab: Lab, unique: str) -> None:
    """nginx answered when the deploy started and is gone by its switch (the original bug: the
    new release was listed live while the site still pointed at the old one, and a rollback then
    left two containers running). Whatever the outcome (a kernel-rule switch needs no nginx), the
    release listed live is the one the site serves once nginx is back, and it alone runs."""
    app, domain = f"{unique}-gone", f"{unique}-gone.example.com"
    good = lab.deploy(app, {"context": lab.context(app, "good"), "domain": domain})
    assert good["status"] == "completed", good
    started = lab.deploy(
        app, {"context": lab.context(f"{app}-2", "new", extra="RUN sleep 3\n"), "domain": domain}, wait=False
    )
    deadline = time.monotonic() + 60
    while lab.at_stage(started["task_id"], "build") is None:
        assert time.monotonic() < deadline, "never reached build"
        time.sleep(0.1)
    web = lab.nginx
    subprocess.run(
        ["nginx", "-p", str(web.prefix), "-c", str(web.conf), "-s", "stop"], check=True, timeout=30
    )
    try:
        ended = lab.final(started["task_id"])
    finally:
        while web.pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        subprocess.run(["nginx", "-p", str(web.prefix), "-c", str(web.conf)], check=True, timeout=30)
    if ended["status"] == "completed":
        expected, releases = "new", [2, 1]
    else:
        assert ended["status"] == "error" and ended["stage"] == "switch", ended
        expected, releases = "good", [1]
    assert [r["release"] for r in lab.releases(app)] == releases
    shown = lab.app(app)
    assert shown["live_release"] == releases[0] and running_of(app) == [shown["container_id"][:12]]
    deadline = time.monotonic() + 10
    while True:
        try:
            if lab.site(domain).text.strip() == expected:
                break
        except httpx2.HTTPError:
            pass
        assert time.monotonic() < deadline, f"the site does not serve release {releases[0]}"
        time.sleep(0.1)
    # A rollback from there leaves one container of the app running, the one it lists.
    back = httpx2.post(
        f"{lab.service.url}/apps/{app}/rollback", json={}, headers=lab.service.headers, timeout=30
    )
    if len(releases) > 1:
        assert back.status_code == 200, back.text
        assert lab.final(back.json()["task_id"])["status"] == "completed"
        shown = lab.app(app)
        assert running_of(app) == [shown["container_id"][:12]] and lab.site(domain).text.strip() == "good"


def test_a_deploy_cancelled_at_any_stage_changes_nothing(lab: Lab, unique: str) -> None:
    app, domain = f"{unique}-cafe", f"{unique}-cafe.example.com"
    assert lab.deploy(app, {"context": lab.context(app, "first"), "domain": domain})["status"] == "completed"
    live = lab.app(app)["container_id"]
    slow_build = lab.context(f"{app}-slow", "never", extra="RUN sleep 30\n")
    never_healthy = {
        "context": lab.context(f"{app}-sick", "sick"),
        "domain": domain,
        "health": {"path": "/missing", "expected_status": 200, "timeout": 60},
    }
    for stage, body in (("build", {"context": slow_build, "domain": domain}), ("health", never_healthy)):
        started = lab.deploy(app, body, wait=False)
        deadline = time.monotonic() + 60
        while lab.at_stage(started["task_id"], stage) is None:
            assert time.monotonic() < deadline, f"never reached {stage}"
            time.sleep(0.1)
        cancel = httpx2.post(
            f"{lab.service.url}/tasks/{started['task_id']}/cancel", headers=lab.service.headers, timeout=30
        )
        assert cancel.status_code == 200, cancel.text
        ended = lab.final(started["task_id"])
        assert ended["status"] == "cancelled", ended
        assert lab.site(domain).text.strip() == "first"
        assert lab.app(app)["container_id"] == live and [r["release"] for r in lab.releases(app)] == [1]
        assert running_of(app) == [live[:12]]


def test_deploys_of_one_app_run_one_after_the_other(lab: Lab, unique: str) -> None:
    app = f"{unique}-twice"
    first = lab.deploy(app, {"context": lab.context(app, "one", extra="RUN sleep 1\n")}, wait=False)
    second = lab.deploy(app, {"context": lab.context(f"{app}-2", "two")}, wait=False)
    assert lab.final(first["task_id"])["status"] == "completed"
    assert lab.final(second["task_id"])["status"] == "completed"
    releases = lab.releases(app)
    assert [(r["release"], r["task_id"]) for r in releases] == [(2, second["task_id"]), (1, first["task_id"])]
    assert len(running_of(app)) == 1


def test_the_same_host_path_neither_exports_nor_loads(lab: Lab, unique: str) -> None:
    app = f"{unique}-direct"
    since = str(int(time.time()) - 1)
    ended = lab.deploy(app, {"context": lab.context(app, "direct"), "port": None})
    assert ended["status"] == "completed", ended
    events = docker_cli(
        "events", "--since", since, "--until", str(int(time.time()) + 1), "--filter", "type=image",
        "--format", "{{.Action}}",
    ).stdout.split()  # fmt: skip
    assert "save" not in events and "load" not in events, events
    assert not list((lab.root / "data" / "builds" / ended["task_id"]).glob("*.tar.lz4"))
    host_port = ended["result"]["host_port"]
    assert httpx2.get(f"http://127.0.0.1:{host_port}/", timeout=5).text.strip() == "direct"


def test_an_image_an_artefact_and_a_git_source(lab: Lab, unique: str, tmp_path: Path) -> None:
    app = f"{unique}-src"
    image = lab.deploy(app, {"image": BASE_IMAGE, "container_port": 8080, "health": {"timeout": 1}})
    # busybox's sh (no terminal) exits at once: the deploy stops at `run`, saying so.
    assert image["status"] == "error" and image["stage"] == "run", image
    assert "stopped at once" in image["error"]
    exported = lab.deploy(app, {"context": lab.context(app, "artefact"), "export": True})
    assert exported["status"] == "completed", exported
    artefact = exported["result"]["compressed_image_path"]
    assert Path(artefact).is_file()
    loaded = lab.deploy(f"{app}-2", {"artefact": artefact})
    assert loaded["status"] == "completed", loaded
    assert stages(loaded)[0] == "load"
    port = loaded["result"]["host_port"]
    assert httpx2.get(f"http://127.0.0.1:{port}/", timeout=5).text.strip() == "artefact"
    # A repository, at a tag: cloned, built, run.
    repo = lab.root / "repos" / unique
    repo.mkdir()
    (repo / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\nRUN mkdir -p /www\nCOPY index.html /www/\n"
        'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n'
    )
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for text in ("tagged", "head"):
        (repo / "index.html").write_text(text + "\n")
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", text], check=True)
        if text == "tagged":
            subprocess.run([*git, "tag", "v1"], check=True)
    cloned = lab.deploy(f"{app}-git", {"git": {"url": str(repo), "ref": "v1"}})
    assert cloned["status"] == "completed", cloned
    port = cloned["result"]["host_port"]
    assert httpx2.get(f"http://127.0.0.1:{port}/", timeout=5).text.strip() == "tagged"
    assert not (lab.root / "data" / "builds" / cloned["task_id"] / "source").exists()


def test_bad_deploys_are_refused_before_anything_starts(lab: Lab, unique: str) -> None:
    app = f"{unique}-bad"
    for body, named in (
        ({}, None),
        ({"context": "a", "image": BASE_IMAGE}, None),
        ({"context": "../../etc"}, "context_path"),
        ({"artefact": "/etc/passwd"}, "artefact"),
        ({"image": BASE_IMAGE, "port": 22}, "port"),
        ({"git": {"url": "ext::sh -c touch% /tmp/pwned"}}, "repo_url"),
        ({"git": {"url": "https://example.com/r.git", "ref": "--upload-pack=touch"}}, None),
        ({"image": BASE_IMAGE, "domain": "bad;domain"}, None),
        ({"image": BASE_IMAGE, "restart_policy": {"name": "sometimes"}}, None),
        ({"image": BASE_IMAGE, "log_options": {"max-size": "1m"}}, None),
        ({"image": BASE_IMAGE, "mode": "swarm", "restart_policy": {"name": "always"}}, None),
    ):
        refused = httpx2.post(
            f"{lab.service.url}/apps/{app}/deploy", json=body, headers=lab.service.headers, timeout=30
        )
        assert 400 <= refused.status_code < 500, (body, refused.text)
        if named:
            assert refused.json().get("field") == named, (body, refused.json())
    for bad_app in ("../x", "-x", "a" * 70):
        refused = httpx2.post(
            f"{lab.service.url}/apps/{bad_app}/deploy",
            json={"image": BASE_IMAGE},
            headers=lab.service.headers,
        )
        assert refused.status_code in (404, 422), refused.text
    assert lab.releases(app) == []


def test_a_token_for_one_app_reaches_that_app_only(lab: Lab, unique: str) -> None:
    shop, blog = f"{unique}-shop-a", f"{unique}-blog-a"
    theirs = lab.deploy(blog, {"context": lab.context(blog, "blog")})
    assert theirs["status"] == "completed", theirs
    made = httpx2.post(
        f"{lab.service.url}/auth/tokens",
        json={"name": "ci-shop", "scopes": ["read", "operate", "exec"], "apps": [f"{unique}-shop*"]},
        headers=lab.service.headers,
        timeout=30,
    )
    assert made.status_code == 201 and made.json()["apps"] == [f"{unique}-shop*"], made.text
    ci = {"Authorization": f"Bearer {made.json()['token']}"}
    me = httpx2.get(f"{lab.service.url}/auth/whoami", headers=ci, timeout=10).json()
    assert me["apps"] == [f"{unique}-shop*"]
    # Its own app: deploy, read, follow.
    started = httpx2.post(
        f"{lab.service.url}/apps/{shop}/deploy", json={"context": lab.context(shop, "shop")}, headers=ci
    )
    assert started.status_code == 202, started.text
    assert lab.final(started.json()["task_id"])["status"] == "completed"
    for path in (f"/apps/{shop}", f"/apps/{shop}/releases", f"/tasks/status/{started.json()['task_id']}"):
        assert httpx2.get(f"{lab.service.url}{path}", headers=ci, timeout=10).status_code == 200, path
    mine = lab.app(shop)["container_id"]
    assert (
        httpx2.post(
            f"{lab.service.url}/docker/exec",
            json={"id_or_name": mine, "cmd": ["cat", "/www/index.html"]},
            headers=ci,
        )
        .json()["output"]
        .strip()
        == "shop"
    )
    # Another app: refused on every way in, and nothing changes.
    container = theirs["result"]["container_id"]
    refused = [
        ("POST", f"/apps/{blog}/deploy", {"context": lab.context(blog, "hijacked")}),
        ("POST", f"/apps/{blog}/rollback", {}),
        ("GET", f"/apps/{blog}/releases", None),
        ("GET", f"/apps/{blog}", None),
        ("GET", f"/docker/logs/{container}", None),
        ("POST", "/docker/exec", {"id_or_name": container, "cmd": ["cat", "/www/index.html"]}),
        ("POST", "/docker/container/fs/read", {"id_or_name": container, "path": "/www/index.html"}),
        ("POST", "/docker/stop", {"id_or_name": container}),
        ("GET", f"/tasks/{theirs['task_id']}/events", None),
        ("GET", f"/tasks/status/{theirs['task_id']}", None),
        ("GET", f"/tasks/logs/{theirs['task_id']}", None),
        # Host-level routes, and objects of no app.
        ("GET", "/docker/containers", None),
        ("GET", "/system/info", None),
        ("POST", "/docker/run", {"image": BASE_IMAGE, "app_id": shop}),
        ("POST", "/nginx/site/create", {"domain": f"{unique}.example.com", "port": 8080}),
        ("GET", "/apps", None),
    ]
    for method, path, body in refused:
        answer = httpx2.request(method, f"{lab.service.url}{path}", json=body, headers=ci, timeout=30)
        assert answer.status_code == 403 and answer.json()["code"] == "app_not_allowed", (path, answer.text)
    assert [r["release"] for r in lab.releases(blog)] == [1]
    assert running_of(blog) == [container[:12]]
    # The dashboard is not for it, and an admin token cannot be limited.
    login = httpx2.post(
        f"{lab.service.url}/ui/login",
        data={"token": made.json()["token"]},
        headers={"Origin": lab.service.url},
    )
    assert login.status_code == 403
    admin_limited = httpx2.post(
        f"{lab.service.url}/auth/tokens",
        json={"name": "x", "scopes": ["admin"], "apps": ["shop"]},
        headers=lab.service.headers,
    )
    assert admin_limited.status_code == 422 and admin_limited.json()["field"] == "apps"


def test_refused_while_queued_and_when_nginx_is_down(tmp_path: Path, unique: str) -> None:
    """`DM_DEPLOY_QUEUE=refuse`: a second deploy of a busy app is a 409; nginx down: a deploy that
    needs a site is a 503 before any task, container or release exists."""
    with service_with_nginx(tmp_path, DM_DEPLOY_QUEUE="refuse", DM_MAX_CONCURRENT_DEPLOYS="1") as (
        service,
        web,
        contexts,
    ):
        lab = Lab(service, web, contexts, tmp_path)
        app, queued_app = f"{unique}-busy", f"{unique}-queued"
        first = lab.deploy(app, {"context": lab.context(app, "one", extra="RUN sleep 2\n")}, wait=False)
        again = httpx2.post(
            f"{service.url}/apps/{app}/deploy",
            json={"image": BASE_IMAGE},
            headers=service.headers,
            timeout=30,
        )
        assert again.status_code == 409 and again.json()["code"] == "deploy_in_progress", again.text
        assert first["task_id"] in again.json()["detail"]
        # Another app's deploy waits for the slot; cancelled while it waits, it holds nothing.
        waiting = lab.deploy(queued_app, {"context": lab.context(queued_app, "q")}, wait=False)
        httpx2.post(
            f"{service.url}/tasks/{waiting['task_id']}/cancel", headers=service.headers, timeout=30
        ).raise_for_status()
        assert lab.final(waiting["task_id"])["status"] == "cancelled"
        assert lab.final(first["task_id"])["status"] == "completed"
        assert lab.deploy(queued_app, {"context": lab.context(queued_app, "q")})["status"] == "completed"

        other = f"{unique}-nonginx"
        subprocess.run(
            ["nginx", "-p", str(web.prefix), "-c", str(web.conf), "-s", "stop"], check=True, timeout=30
        )
        deadline = time.monotonic() + 10
        while web.pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            down = httpx2.post(
                f"{service.url}/apps/{other}/deploy",
                json={"context": lab.context(other, "x"), "domain": f"{other}.example.com"},
                headers=service.headers,
                timeout=30,
            )
            assert down.status_code == 503, down.text
            tasks = httpx2.get(
                f"{service.url}/tasks", params={"app_id": other}, headers=service.headers, timeout=30
            ).json()
            assert tasks["tasks"] == [], tasks
            assert docker_cli("ps", "-aq", "--filter", f"label=docker-manager.app_id={other}").stdout == ""
            assert lab.releases(other) == []
            assert not list(web.sites.glob(f"{other}*"))
        finally:
            subprocess.run(["nginx", "-p", str(web.prefix), "-c", str(web.conf)], check=True, timeout=30)


def _token(lab: Lab, scopes: list[str], apps: list[str] | None = None) -> dict[str, str]:
    made = httpx2.post(
        f"{lab.service.url}/auth/tokens",
        json={"name": "t", "scopes": scopes, **({"apps": apps} if apps else {})},
        headers=lab.service.headers,
        timeout=30,
    )
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['token']}"}


def test_a_deploy_takes_nothing_of_another_app_or_of_an_admin(lab: Lab, unique: str, tmp_path: Path) -> None:
    """Tags, images and artefacts of other apps, an admin's site of the app, another file's name."""
    mine, theirs = f"{unique}-mine", f"{unique}-theirs"
    built = lab.deploy(theirs, {"context": lab.context(theirs, "theirs"), "export": True})
    assert built["status"] == "completed", built
    their_image = built["result"]["image_id"]
    their_artefact = built["result"]["compressed_image_path"]
    ci = _token(lab, ["read", "operate"], [f"{unique}-mine*"])
    for body, field_name in (
        ({"context": lab.context(mine, "x"), "tag": f"{theirs}:latest"}, "tag"),
        ({"git": {"url": f"file://{lab.root}/repos/none"}, "tag": "postgres:16"}, "tag"),
        ({"image": their_image}, "image"),
        ({"image": "example.org/never/pulled:1"}, "image"),
        ({"artefact": their_artefact}, "artefact"),
    ):
        refused = httpx2.post(f"{lab.service.url}/apps/{mine}/deploy", json=body, headers=ci, timeout=30)
        assert refused.status_code == 403, (body, refused.text)
        assert refused.json()["code"] == "app_not_allowed" and refused.json()["field"] == field_name
        assert theirs not in refused.json()["detail"]
    assert docker_cli("image", "inspect", "-f", "{{.Id}}", f"{theirs}:latest").stdout.strip() == their_image

    # An admin pointed a site of the app at something of its own: an operate token cannot move it.
    admin_port = 18000 + int(unique[-4:], 16) % 1000
    domain = f"{mine}-admin.example.com"
    made = httpx2.post(
        f"{lab.service.url}/nginx/site/create",
        json={"domain": domain, "port": admin_port, "app_id": mine},
        headers=lab.service.headers,
        timeout=30,
    )
    assert made.status_code == 200, made.text
    operator = _token(lab, ["read", "operate"])
    refused = httpx2.post(
        f"{lab.service.url}/apps/{mine}/deploy", json={"context": lab.context(mine, "x")}, headers=operator
    )
    assert refused.status_code == 403 and refused.json()["code"] == "not_managed", refused.text
    site = next(lab.nginx.sites.glob(f"{mine}.conf")).read_text()
    assert f"port={admin_port}" in site and "kind=host" in site

    # A site named after its domain is not the file of an app named like that domain.
    other = f"{unique}-named.example.com"
    httpx2.post(
        f"{lab.service.url}/nginx/site/create",
        json={"domain": other, "port": admin_port},
        headers=lab.service.headers,
        timeout=30,
    ).raise_for_status()
    clash = httpx2.post(
        f"{lab.service.url}/apps/{other}/deploy",
        json={"context": lab.context(mine, "x"), "domain": other},
        headers=lab.service.headers,
    )
    assert clash.status_code == 409, clash.text
    assert f"port={admin_port}" in (lab.nginx.sites / f"{other}.conf").read_text()
    for name in (domain, other):
        httpx2.post(
            f"{lab.service.url}/nginx/site/delete", json={"domain": name}, headers=lab.service.headers
        ).raise_for_status()


def test_a_deployed_app_comes_back_by_itself_and_keeps_its_log_policy(lab: Lab, unique: str) -> None:
    app = f"{unique}-back"
    ended = lab.deploy(
        app,
        {"context": lab.context(app, "back"), "log_driver": "local", "log_options": {"max-size": "1m"}},
    )
    assert ended["status"] == "completed", ended
    name = ended["result"]["container_name"]
    host = json.loads(docker_cli("inspect", "--format", "{{json .HostConfig}}", name).stdout)
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["LogConfig"] == {"Type": "local", "Config": {"max-size": "1m"}}
    # Its process dies (not a stop asked for): the engine starts it again, and it serves.
    pid = docker_cli("inspect", "--format", "{{.State.Pid}}", name).stdout.strip()
    subprocess.run(["kill", "-9", pid], check=True)
    deadline = time.monotonic() + 30
    while docker_cli("inspect", "--format", "{{.RestartCount}} {{.State.Running}}", name).stdout.split() != [
        "1",
        "true",
    ]:
        assert time.monotonic() < deadline, "the engine did not start the app again"
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while True:  # (an engine-chosen port may change on a restart: the app's view follows it)
        try:
            port = lab.app(app)["host_port"]
            if httpx2.get(f"http://127.0.0.1:{port}/", timeout=5).text.strip() == "back":
                break
        except httpx2.HTTPError:
            pass
        assert time.monotonic() < deadline, "the app does not serve again after its restart"
        time.sleep(0.1)
    # Asked otherwise, as asked; a log driver that sends logs off the host is not for operate.
    other = lab.deploy(app, {"context": lab.context(app, "back"), "restart_policy": {"name": "no"}})
    assert other["status"] == "completed", other
    named = docker_cli(
        "inspect", "--format", "{{.HostConfig.RestartPolicy.Name}}", other["result"]["container_name"]
    )
    assert named.stdout.strip() == "no"
    operator = _token(lab, ["read", "operate"])
    remote = lab.deploy_as(app, {"image": f"{app}:latest", "log_driver": "syslog"}, operator)
    assert remote.get("code") == 403 and "syslog" in remote["error"], remote  # (refused before any task)


def test_an_image_from_a_private_registry_with_credentials_used_once(
    lab: Lab, unique: str, tmp_path: Path
) -> None:
    """An image only a private registry (htpasswd) holds: pulled with the deploy's credentials,
    which are refused when wrong and appear nowhere afterwards (status, events, logs, audit)."""
    app = f"{unique}-private"
    with registry(tmp_path / "registry") as private:
        reference = f"{private.address}/team/{app}:v1"
        folder = Path(lab.contexts) / lab.context(app, "private")
        docker_cli("build", "-q", "-t", reference, str(folder))
        config = tmp_path / "docker-config"  # (a login of our own: the host's stays untouched)
        login = ["docker", "--config", str(config), "login", private.address, "-u", private.username]
        subprocess.run([*login, "--password-stdin"], input=private.password, text=True, check=True)
        pushed = subprocess.run(["docker", "--config", str(config), "push", reference], capture_output=True)
        assert pushed.returncode == 0, pushed.stderr
        docker_cli("rmi", reference)

        anonymous = lab.deploy(app, {"image": reference})
        assert anonymous["status"] == "error" and anonymous["stage"] == "pull", anonymous
        wrong = {"username": private.username, "password": "not-the-password"}
        refused = lab.deploy(app, {"image": reference, "registry_auth": wrong})
        assert refused["status"] == "error" and refused["stage"] == "pull", refused
        right = {"username": private.username, "password": private.password}
        pulled = lab.deploy(app, {"image": reference, "registry_auth": right})
        assert pulled["status"] == "completed", pulled
        port = pulled["result"]["host_port"]
        assert httpx2.get(f"http://127.0.0.1:{port}/", timeout=5).text.strip() == "private"
    headers = lab.service.headers
    seen = [
        json.dumps(pulled),
        httpx2.get(f"{lab.service.url}/tasks/logs/{pulled['task_id']}", headers=headers, timeout=30).text,
        httpx2.get(f"{lab.service.url}/audit", params={"limit": 50}, headers=headers, timeout=30).text,
        (lab.root / "server.log").read_text(errors="replace"),
        *(path.read_bytes().decode("latin-1") for path in (lab.root / "data").glob("docker-manager.db*")),
    ]
    assert len(seen) >= 5 and all(private.password not in text for text in seen)
    # Credentials go with an image source only.
    stray = httpx2.post(
        f"{lab.service.url}/apps/{app}/deploy",
        json={"context": lab.context(app, "x"), "registry_auth": right},
        headers=headers,
        timeout=30,
    )
    assert stray.status_code == 422, stray.text
