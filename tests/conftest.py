"""Test fixtures: the app against the real Docker engine, tokens per scope, a busybox base image.

Integration tests never skip: `scripts/test.sh` starts dockerd, and a missing engine is a failure.
Every Docker object a test creates is named with the session prefix and removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI

from docker_manager.auth import Scope
from docker_manager.config import Settings
from docker_manager.runtime import Runtime
from tests.harness import (
    BASE_IMAGE,
    PREFIX,
    SESSION_STARTED,
    TEST_FRONTS,
    docker_cli,
    is_session_front,
    started_app,
)


@pytest.fixture(scope="session", autouse=True)
def _clean_env() -> Iterator[None]:
    # Settings read DM_* variables; the developer's own must not leak into tests.
    saved = {k: v for k, v in os.environ.items() if k.startswith("DM_")}
    for key in saved:
        del os.environ[key]
    # Nor a config.json lying in the working directory.
    os.environ["DM_CONFIG"] = "/nonexistent/docker-manager-test-config.json"
    # Site fronts of the tests' own (a service on this host keeps 127.77.0.0/16).
    os.environ["DM_SWITCH_FRONT_NETWORK"] = TEST_FRONTS
    yield
    del os.environ["DM_CONFIG"]
    del os.environ["DM_SWITCH_FRONT_NETWORK"]
    os.environ.update(saved)


@pytest.fixture(scope="session")
def base_image() -> str:
    """A tiny image with busybox (sh, httpd, sleep...), built from Debian's busybox-static."""
    if docker_cli("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    busybox = shutil.which("busybox") or "/bin/busybox"
    assert Path(busybox).exists(), "busybox-static is not installed (scripts/test.sh installs it)"
    context = Path(f"/tmp/{PREFIX}-bb")
    context.mkdir(parents=True, exist_ok=True)
    shutil.copy(busybox, context / "busybox")
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\nCMD ["sh"]\n'
    )
    docker_cli("build", "-q", "-t", BASE_IMAGE, str(context))
    shutil.rmtree(context)
    return BASE_IMAGE


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dm-data")


@pytest.fixture(scope="session")
def admin_token() -> str:
    return "dm_test_admin_" + secrets.token_urlsafe(16)


@pytest.fixture(scope="session")
def settings(data_dir: Path, admin_token: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        # scripts/test.sh also runs the task and auth tests against PostgreSQL this way.
        database_url=os.environ.get("TEST_DATABASE_URL"),
        admin_token=admin_token,  # type: ignore[arg-type]
        context_roots=[data_dir / "contexts"],
        exec_timeout=10,
        exec_max_output_bytes=256 * 1024,
        top_sample_interval=0.5,
        auth_failure_limit=100_000,  # the route walks send many wrong tokens on purpose
    )


@pytest.fixture(scope="session")
async def services_app(
    settings: Settings,
) -> AsyncIterator[tuple[Runtime, httpx2.AsyncClient, FastAPI]]:
    async with started_app(settings) as (app, client):
        yield app.state.runtime, client, app


@pytest.fixture(scope="session")
async def live_url(services_app: tuple[Runtime, httpx2.AsyncClient, FastAPI]) -> AsyncIterator[str]:
    """The same app served over real HTTP (uvicorn, in this event loop).

    httpx's ASGITransport buffers whole responses, so live streams and client disconnects can
    only be tested through a real server.
    """
    import socket

    import uvicorn

    app = services_app[2]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
async def live(live_url: str) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=live_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def services(services_app: tuple[Runtime, httpx2.AsyncClient, FastAPI]) -> Runtime:
    return services_app[0]


@pytest.fixture(scope="session")
def client(services_app: tuple[Runtime, httpx2.AsyncClient, FastAPI]) -> httpx2.AsyncClient:
    return services_app[1]


@dataclass
class Tokens:
    admin: str
    by_scope: dict[Scope, str] = field(default_factory=dict)

    def headers(self, scope: Scope | str) -> dict[str, str]:
        scope = Scope(scope)
        token = self.admin if scope is Scope.ADMIN else self.by_scope[scope]
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
async def tokens(services: Runtime, admin_token: str) -> Tokens:
    result = Tokens(admin=admin_token)
    for scope in (Scope.READ, Scope.OPERATE, Scope.EXEC, Scope.METRICS):
        _, secret = await services.tokens.create(name=f"test-{scope.value}", scopes=frozenset({scope}))
        result.by_scope[scope] = secret
    return result


@pytest.fixture
def admin(tokens: Tokens) -> dict[str, str]:
    return tokens.headers(Scope.ADMIN)


@pytest.fixture
def operate(tokens: Tokens) -> dict[str, str]:
    return tokens.headers(Scope.OPERATE)


@pytest.fixture
def read(tokens: Tokens) -> dict[str, str]:
    return tokens.headers(Scope.READ)


@pytest.fixture
def exec_(tokens: Tokens) -> dict[str, str]:
    return tokens.headers(Scope.EXEC)


@pytest.fixture
def unique() -> Iterator[str]:
    """A fresh Docker-safe name for this test's objects; whatever carries it is removed afterwards."""
    name = f"{PREFIX}-{secrets.token_hex(3)}"
    yield name
    _remove_named(name)


def _remove_named(fragment: str) -> None:
    containers = docker_cli("ps", "-aq", "--filter", f"name={fragment}", check=False).stdout.split()
    if containers:
        docker_cli("rm", "-f", *containers, check=False)
    # By name, never by id: an id is shared with every other tag of the image (the base image too).
    # Registry-prefixed tags (127.0.0.1:PORT/team/<fragment>...) count as well.
    listed = docker_cli("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
    images = {ref for ref in listed if fragment in ref.rsplit("/", 1)[-1] and not ref.endswith(":<none>")}
    if images:
        docker_cli("rmi", *images, check=False)
    # Untagged leftovers of this session's builds: earlier versions of a re-used tag, and the steps
    # a cancelled or failed build completed. Built images carry no label, so: those made since the
    # session began (an engine's other dangling images are older, or another session's leftovers).
    dangling = set(
        docker_cli("images", "-q", "--no-trunc", "--filter", "dangling=true", check=False).stdout.split()
    )
    if dangling:
        described = docker_cli(
            "image", "inspect", "--format", "{{.Id}} {{.Created}}", *dangling, check=False
        ).stdout.splitlines()
        ours = [
            image_id
            for image_id, created in (line.split(" ", 1) for line in described if " " in line)
            if _created_at(created) >= SESSION_STARTED
        ]
        if ours:
            docker_cli("rmi", *ours, check=False)
    for kind in ("volume", "network"):
        found = docker_cli(kind, "ls", "-q", "--filter", f"name={fragment}", check=False).stdout.split()
        if found:
            docker_cli(kind, "rm", *found, check=False)


# One file per running test session (its pid), in a folder only root can write: a test run is root.
SESSIONS = Path("/run/docker-manager-test-sessions")
SHARED_BASE_IMAGES = ("dm-test-bb:latest", "dm-test-web:latest")  # built by the suite when missing


@pytest.fixture(scope="session", autouse=True)
def _engine_as_found() -> Iterator[None]:
    """At the end the engine holds what it held at the start: what this session made is removed
    (named with PREFIX, the base images it built, untagged images made since it began), and
    anything else new fails the run (named, never removed: it may be an operator's). While another
    test session runs on this engine the two cannot be told apart: this one stands aside."""
    mine = _enter_session()
    before = _engine_objects()
    yield
    if mine is None:
        return
    mine.unlink(missing_ok=True)
    if _other_sessions():
        return
    _remove_ours(before)
    left = {kind: sorted(found - before[kind]) for kind, found in _engine_objects().items()}
    left = {kind: found for kind, found in left.items() if found}
    if left:
        pytest.fail(f"the test session left these on the engine: {left}", pytrace=False)


def _enter_session() -> Path | None:
    """This session's file in SESSIONS; None (and the check stands aside) when the folder is not
    root's alone."""
    with contextlib.suppress(FileExistsError):
        SESSIONS.mkdir(mode=0o700)
    info = os.lstat(SESSIONS)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    mine = SESSIONS / str(os.getpid())
    fd = os.open(mine, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    return mine


def _remove_ours(before: dict[str, set[str]]) -> None:
    now = _engine_objects()
    containers = [c for c in now["container_name"] - before["container_name"] if PREFIX in c]
    if containers:
        docker_cli("rm", "-f", *containers, check=False)
    tags = [t for t in now["tag"] - before["tag"] if PREFIX in t or t in SHARED_BASE_IMAGES]
    if tags:
        docker_cli("rmi", *tags, check=False)
    for _ in range(10):  # a chain of untagged build steps frees one parent per round
        dangling = set(
            docker_cli("images", "-q", "--no-trunc", "--filter", "dangling=true", check=False).stdout.split()
        )
        fresh = (dangling - before["image"]) & _made_since_start(dangling)
        if not fresh:
            break
        docker_cli("rmi", *fresh, check=False)
    for kind in ("network", "volume"):
        names = [n for n in now[f"{kind}_name"] - before[f"{kind}_name"] if PREFIX in n]
        if names:
            docker_cli(kind, "rm", *names, check=False)


def _made_since_start(images: set[str]) -> set[str]:
    if not images:
        return set()
    described = docker_cli(
        "image", "inspect", "--format", "{{.Id}} {{.Created}}", *images, check=False
    ).stdout
    pairs = (line.split(" ", 1) for line in described.splitlines() if " " in line)
    return {image for image, created in pairs if _created_at(created) >= SESSION_STARTED}


def _engine_objects() -> dict[str, set[str]]:
    def listed(*args: str) -> set[str]:
        return set(docker_cli(*args, check=False).stdout.split())

    tags = listed("images", "--format", "{{.Repository}}:{{.Tag}}")
    return {
        "container_name": listed("ps", "-a", "--format", "{{.Names}}"),
        "image": listed("images", "-aq", "--no-trunc"),
        "tag": {tag for tag in tags if not tag.endswith(":<none>")},
        "network_name": listed("network", "ls", "--format", "{{.Name}}"),
        "volume_name": listed("volume", "ls", "-q"),
    }


def _other_sessions() -> bool:
    for path in SESSIONS.glob("*"):
        try:
            os.kill(int(path.name), 0)
        except (ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)  # (a session that ended without its clean-up)
            continue
        return True
    return False


@pytest.fixture(scope="session", autouse=True)
def _remove_switch_rules() -> Iterator[None]:
    """At the end, remove the kernel rules the tests' traffic switches made (netfilter.py): only
    those for this session's own front addresses (tests/services.py), never a service's on this
    host nor another test session's. The DM-SITES chain goes too when the session made it and
    nothing uses it any more."""
    if not shutil.which("iptables"):
        yield
        return
    had_chain = "-N DM-SITES" in _nat_rules()
    yield
    lines = _nat_rules()
    ours = [line.split()[1] for line in lines if line.startswith("-A DMS-") and is_session_front(_dest(line))]
    rules = ["*nat"]
    rules += [
        line.replace("-A", "-D", 1)
        for line in lines
        if line.startswith("-A OUTPUT -d ") and "-j DM-SITES" in line and is_session_front(_dest(line))
    ]
    rules += [f"-D DM-SITES -j {chain}" for chain in ours if f"-A DM-SITES -j {chain}" in lines]
    rules += [f"-F {chain}" for chain in ours] + [f"-X {chain}" for chain in ours] + ["COMMIT", ""]
    subprocess.run(
        ["iptables-restore", "-w", "5", "--noflush"], input="\n".join(rules), text=True, check=False
    )
    left = _nat_rules()
    if (
        not had_chain
        and "-N DM-SITES" in left
        and not any("DM-SITES" in line for line in left if line.startswith("-A"))
    ):
        subprocess.run(["iptables", "-w", "5", "-t", "nat", "-X", "DM-SITES"], check=False)


def _nat_rules() -> list[str]:
    listed = subprocess.run(["iptables", "-w", "5", "-t", "nat", "-S"], capture_output=True, text=True)
    return listed.stdout.splitlines()


def _created_at(stamp: str) -> datetime:
    try:
        return datetime.fromisoformat(stamp.strip())
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _dest(rule: str) -> str:
    words = rule.split()
    return words[words.index("-d") + 1] if "-d" in words else ""


@pytest.fixture(scope="session", autouse=True)
def _remove_docker_objects() -> Iterator[None]:
    """At the end, remove every container and image this session created (named with PREFIX)."""
    yield
    _remove_named(PREFIX)
