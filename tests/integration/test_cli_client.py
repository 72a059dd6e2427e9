"""The remote command-line client against a live server process, the real engine and nginx."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.harness import NginxServer, ServiceProcess, service_with_nginx

pytestmark = pytest.mark.docker


@dataclass
class Server:
    process: ServiceProcess
    nginx: NginxServer
    contexts: Path
    data_dir: Path  # (the commands that read the database, as an operator on the host runs them)

    @property
    def token(self) -> str:
        return self.process.headers["Authorization"].split(" ", 1)[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli-server")
    with service_with_nginx(root) as (process, web, contexts):
        yield Server(process, web, contexts, root / "data")


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DM_")}
    return {**env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"), "TERM": "dumb", **extra}


def cli(home: Path, *args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docker_manager", *args],
        env=cli_env(home, **extra),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def site_text(server: Server, domain: str) -> str:
    reply = httpx2.get(f"http://127.0.0.1:{server.nginx.port}/", headers={"Host": domain}, timeout=5)
    return reply.text.strip()


def web_context(server: Server, name: str, text: str, base_image: str) -> str:
    folder = server.contexts / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN mkdir /www && echo {text} > /www/index.html\n"
        'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n'
    )
    return name


@pytest.fixture
def home(tmp_path: Path, server: Server) -> Path:
    """A user's home, logged in to the server."""
    done = cli(
        tmp_path, "login", server.process.url, "--name", "lab", "--token-stdin", stdin=server.token + "\n"
    )
    assert done.returncode == 0, done.stderr
    return tmp_path


def test_login_saves_a_private_context(home: Path, server: Server, tmp_path: Path) -> None:
    config = home / "config" / "docker-manager" / "config.toml"
    assert config.stat().st_mode & 0o777 == 0o600
    assert server.token in config.read_text()
    listed = json.loads(cli(home, "contexts", "--json").stdout)
    assert listed == [{"name": "lab", "url": server.process.url, "current": True}]
    assert server.token not in cli(home, "contexts").stdout
    refused = cli(tmp_path / "other", "login", server.process.url, "--token-stdin", stdin="dm_wrong\n")
    assert refused.returncode == 3 and "refused the token" in refused.stderr
    assert not (tmp_path / "other" / "config" / "docker-manager" / "config.toml").exists()
    assert cli(tmp_path / "nobody", "ps").returncode == 2  # not logged in: a usage error
    down = cli(home, "ps", DM_URL="http://127.0.0.1:9", DM_TOKEN="x")
    assert down.returncode == 3 and "cannot reach" in down.stderr


def test_deploy_with_a_domain_then_roll_back(
    home: Path, server: Server, unique: str, base_image: str
) -> None:
    domain = f"{unique}.example.com"
    first = cli(
        home,
        "deploy",
        web_context(server, f"{unique}-v1", "v1", base_image),
        "--app",
        unique,
        "--domain",
        domain,
        "--memory",
        "64m",
    )
    assert first.returncode == 0, first.stderr + first.stdout
    assert "\x1b" not in first.stdout + first.stderr  # not a terminal: plain lines only
    assert "[building]" in first.stdout and "release 1" in first.stdout
    assert site_text(server, domain) == "v1"
    second = cli(
        home,
        "deploy",
        web_context(server, f"{unique}-v2", "v2", base_image),
        "--app",
        unique,
        "--domain",
        domain,
        "--json",
    )
    assert second.returncode == 0, second.stderr
    deployed = json.loads(second.stdout)
    assert deployed["release"] == 2 and deployed["domain"] == domain
    assert site_text(server, domain) == "v2"

    rolled = cli(home, "rollback", unique, "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["restored_release"] == 1
    assert site_text(server, domain) == "v1"

    releases = json.loads(cli(home, "releases", unique, "--json").stdout)
    assert [(r["release"], r["source"]) for r in releases] == [
        (3, "rollback"),
        (2, "deploy"),
        (1, "deploy"),
    ]
    apps = json.loads(cli(home, "apps", "--json").stdout)
    assert next(a for a in apps if a["app_id"] == unique)["domains"] == [domain]
    sites = json.loads(cli(home, "sites", "--json").stdout)
    assert any(s["domain"] == domain for s in sites)
    containers = json.loads(cli(home, "ps", "--all", "--json").stdout)
    assert any(c["app_id"] == unique for c in containers)
    tasks = json.loads(cli(home, "tasks", "--app", unique, "--json").stdout)
    assert {t["task_type"] for t in tasks} == {"deploy", "rollback"}
    table = cli(home, "releases", unique).stdout
    assert table.splitlines()[0].split()[:3] == ["RELEASE", "STATUS", "SOURCE"]


def test_a_failing_deploy_exits_1_with_the_build_error(
    home: Path, server: Server, unique: str, base_image: str
) -> None:
    folder = server.contexts / f"{unique}-broken"
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo about-to-break && exit 7\n")
    failed = cli(home, "deploy", folder.name, "--app", unique)
    assert failed.returncode == 1
    assert "about-to-break" in failed.stdout and "non-zero code: 7" in failed.stderr
    usage = cli(home, "deploy", "--app", unique)
    assert usage.returncode == 2


def test_logs_follow_sees_every_line_once_across_reconnects(
    home: Path, server: Server, unique: str, base_image: str
) -> None:
    folder = server.contexts / f"{unique}-chatty"
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN for i in $(seq 1 150); do echo tick-$i; sleep 0.02; done\n"
        # Output that would clear the screen and set the clipboard on a terminal, shown harmless.
        "RUN printf 'evil-\\033[2J-\\033]52;c;cHduZWQ=\\007-end\\n'\n"
    )
    started = httpx2.post(
        f"{server.process.url}/docker/build/start",
        json={"context_path": folder.name, "nocache": True, "app_id": unique},  # (its image: removed after)
        headers=server.process.headers,
        timeout=30,
    ).json()
    # The client reconnects every 0.2 s, as behind a proxy with a short idle limit.
    followed = cli(home, "logs", started["task_id"], "-f", DM_CLIENT_STREAM_MAX_SECONDS="0.2")
    assert followed.returncode == 0, followed.stderr
    ticks = [line.split("| ", 1)[1] for line in followed.stdout.splitlines() if "| tick-" in line]
    assert ticks == [f"tick-{i}" for i in range(1, 151)]
    assert "evil-" in followed.stdout and "\x1b" not in followed.stdout and "\x07" not in followed.stdout


def test_the_terminal_view_updates_in_place(home: Path, server: Server, unique: str, base_image: str) -> None:
    folder = server.contexts / f"{unique}-slow"
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN echo {unique}\n"  # never from the cache: the steps must run
        "RUN for i in $(seq 1 20); do echo step-$i; sleep 0.1; done\nRUN echo done\n"
        'CMD ["httpd", "-f", "-p", "80", "-h", "/"]\n'  # a deploy needs a container that keeps running
    )
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "docker_manager", "deploy", folder.name, "--app", unique],
        env=cli_env(home, TERM="xterm-256color", COLUMNS="100", LINES="30"),
        stdin=child,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    screen = b""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(main)
    assert process.returncode == 0, screen[-2000:]
    text = screen.decode("utf-8", "replace")
    # The block is redrawn in place (cursor up, erase line), many times, then the result line.
    assert text.count("\x1b[2K") > 10 and "\x1b[1A" in text
    assert "build" in text and f"{unique}: release 1" in text


def test_a_deploy_goes_on_when_the_terminal_leaves(
    home: Path, server: Server, unique: str, base_image: str
) -> None:
    """The deploy runs on the server: Ctrl-C detaches (saying how to follow again), a killed client
    changes nothing, and `logs -f` follows the same task to its end."""
    folder = server.contexts / f"{unique}-leave"
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN echo {unique}\nRUN for i in $(seq 1 15); do echo step-$i; sleep 0.2; done\n"
        'CMD ["httpd", "-f", "-p", "80", "-h", "/"]\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "docker_manager", "deploy", folder.name, "--app", unique],
        env=cli_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As at a terminal: a suite started in the background (`cmd &`) has SIGINT ignored, which
        # its children inherit, and Python then never turns Ctrl-C into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while "step-" not in (line := process.stdout.readline()):  # the build runs
        assert line and time.monotonic() < deadline, "the build never started"
    process.send_signal(2)  # Ctrl-C, not at a terminal: detach
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    task_id = err.split("docker-manager logs ", 1)[1].split()[0]
    followed = cli(home, "logs", task_id, "-f")
    assert followed.returncode == 0, followed.stderr
    assert "step-15" in followed.stdout
    status = json.loads(cli(home, "task", task_id, "--json").stdout)
    assert status["status"] == "completed", status
    releases = json.loads(cli(home, "releases", unique, "--json").stdout)
    assert [(r["release"], r["task_id"]) for r in releases] == [(1, task_id)]


def test_every_table_reads_as_text(home: Path, server: Server, unique: str, base_image: str) -> None:
    """Each table command with real rows: ports, lists and mappings as words, never a Python repr."""
    domain = f"{unique}-tables.example.com"
    context = web_context(server, f"{unique}-tables", "tables", base_image)
    deployed = cli(home, "deploy", context, "--app", unique, "--domain", domain)
    assert deployed.returncode == 0, deployed.stderr
    commands = [
        ["apps"], ["sites"], ["ps"], ["ps", "--all"], ["releases", unique], ["tasks"], ["contexts"],
        ["certs"], ["top"], ["usage"], ["token", "list"], ["audit", "--limit", "20"],
    ]  # fmt: skip
    on_the_host = {"DM_DATA_DIR": str(server.data_dir)}  # (token and audit read the database)
    for command in commands:
        shown = cli(home, *command, **on_the_host)
        assert shown.returncode == 0, (command, shown.stderr)
        text = shown.stdout
        for repr_mark in ("{'", "['", "': ", "None", "True", "False"):
            assert repr_mark not in text, (command, repr_mark, text)
    ps = cli(home, "ps").stdout
    row = next(line for line in ps.splitlines() if unique in line)
    assert "80/tcp→" in row, ps
    apps = cli(home, "apps").stdout
    assert domain in next(line for line in apps.splitlines() if line.startswith(unique)), apps
