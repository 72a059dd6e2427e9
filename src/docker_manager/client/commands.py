"""The remote commands: a person at a terminal, or a script, against a running service.

Every command takes `--context NAME` (or DM_CONTEXT; DM_URL and DM_TOKEN override for scripts) and
most take `--json`. Exit codes: 0 success, 1 failed, 2 usage, 3 unreachable or token refused.
"""

from __future__ import annotations

import enum
import getpass
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from docker_manager.client import config as client_config
from docker_manager.client.certificates import certs
from docker_manager.client.config import Context
from docker_manager.client.deploy import DeployOptions, deploy_app
from docker_manager.client.errors import EXIT_FAILED, EXIT_USAGE, ClientError
from docker_manager.client.follow import follow
from docker_manager.client.host import doctor, nodes, scale
from docker_manager.client.terminal import (
    ContextOption,
    JsonOption,
    api_for,
    emit,
    fail,
    follow_to_end,
    table,
)
from docker_manager.client.views import PlainView, clean, one_line


class TlsMode(enum.StrEnum):
    auto = "auto"
    off = "off"


TlsOption = Annotated[
    TlsMode | None, typer.Option(help="The domain's HTTPS: auto (a certificate when ACME is on) or off.")
]
HstsOption = Annotated[
    int | None, typer.Option(help="The domain's Strict-Transport-Security max-age (0: none).", min=0)
]


def login(
    url: Annotated[str, typer.Argument(help="The service, e.g. http://127.0.0.1:8002")],
    name: Annotated[str, typer.Option("--name", help="Save it as this context.")] = "default",
    token_stdin: Annotated[bool, typer.Option("--token-stdin", help="Read the token from stdin.")] = False,
) -> None:
    """Check a token against the service and save URL and token as a context (file mode 0600)."""
    if not client_config.CONTEXT_NAME.fullmatch(name):
        typer.echo("error: a context name is letters, digits, `_`, `.` and `-`", err=True)
        raise typer.Exit(EXIT_USAGE)
    token = sys.stdin.readline().strip() if token_stdin else getpass.getpass("token: ").strip()
    context = Context(name, url.rstrip("/"), token)
    try:
        from docker_manager.client.api import Api

        with Api(context, timeout=30) as api:
            me = api.get("/auth/whoami")
    except ClientError as exc:
        raise fail(exc.message, exc.exit_code) from None
    saved = client_config.load()
    saved.contexts[name] = context
    saved.current = name
    path = client_config.save(saved)
    who = one_line(f"{me.get('name')} ({','.join(map(str, me.get('scopes', [])))})")
    typer.echo(f"logged in to {context.url} as {who}; saved in {path}")


def logout(
    name: Annotated[str | None, typer.Argument(help="Default: the current context.")] = None,
) -> None:
    """Forget a context (its token is removed from the file)."""
    saved = client_config.load()
    chosen = name or saved.current
    if not chosen or chosen not in saved.contexts:
        typer.echo("error: no such context", err=True)
        raise typer.Exit(EXIT_USAGE)
    del saved.contexts[chosen]
    if saved.current == chosen:
        saved.current = next(iter(saved.contexts), None)
    client_config.save(saved)
    typer.echo(f"logged out of {chosen}")


def contexts(as_json: JsonOption = False) -> None:
    """The saved contexts (never their tokens)."""
    saved = client_config.load()
    rows = [
        {"name": c.name, "url": c.url, "current": c.name == saved.current} for c in saved.contexts.values()
    ]
    emit(rows, as_json, lambda r: table(r, ["name", "url", "current"]))


def _registry_login(user: str | None, password_file: Path | None) -> dict[str, str] | None:
    if user is None and password_file is None:
        return None
    if user is None or password_file is None:
        raise fail("--registry-user and --registry-password-file go together", EXIT_USAGE)
    try:
        password = password_file.read_text().strip()
    except OSError as exc:
        raise fail(f"cannot read {password_file}: {exc.strerror}", EXIT_USAGE) from None
    return {"username": user, "password": password}


def deploy(
    path: Annotated[str | None, typer.Argument(help="Context folder as the server sees it.")] = None,
    app_id: Annotated[str, typer.Option("--app", help="The app (its releases, its site).")] = ...,  # type: ignore[assignment]
    image: Annotated[str | None, typer.Option(help="Run this image instead of building PATH.")] = None,
    registry_user: Annotated[
        str | None, typer.Option(help="With --image: the private registry's user name.")
    ] = None,
    registry_password_file: Annotated[
        Path | None, typer.Option(help="With --registry-user: a file holding its password.")
    ] = None,
    git: Annotated[str | None, typer.Option(help="Clone this repository and build it instead.")] = None,
    ref: Annotated[str | None, typer.Option(help="The branch or tag of --git.")] = None,
    artefact: Annotated[str | None, typer.Option(help="Load this .tar.lz4 (server-side path).")] = None,
    tag: Annotated[str | None, typer.Option(help="Image tag (default {app}:latest).")] = None,
    port: Annotated[int | None, typer.Option(help="Host port to publish the container port on.")] = None,
    container_port: Annotated[int, typer.Option(help="The port the app listens on.")] = 80,
    domain: Annotated[str | None, typer.Option(help="Point this domain at the new container.")] = None,
    tls: TlsOption = None,
    hsts: HstsOption = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="K=V, repeatable.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 256m.")] = None,
    cpu: Annotated[float | None, typer.Option(help="CPUs, e.g. 0.5.")] = None,
    health_path: Annotated[str, typer.Option(help="What the new container must answer.")] = "/",
    export: Annotated[bool, typer.Option(help="Also save the image as an artefact.")] = False,
    restart: Annotated[
        str | None,
        typer.Option(help="Restart policy: no, unless-stopped (default), on-failure[:N]."),
    ] = None,
    replicas: Annotated[int | None, typer.Option(help="Run it as N replicas on the swarm.")] = None,
    placement: Annotated[list[str] | None, typer.Option(help="A swarm constraint, repeatable.")] = None,
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy on the server, as one task: build PATH (or clone --git, or take --image or
    --artefact), run it, check it, switch its sites (and --domain) to it once it answers, retire
    the previous container. Progress is shown live on a terminal."""
    if sum(source is not None for source in (path, image, git, artefact)) != 1:
        typer.echo("error: give one source: a context PATH, --git, --image or --artefact", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        variables = dict(item.split("=", 1) for item in env or [])
    except ValueError:
        typer.echo("error: --env takes K=V", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    registry_login = _registry_login(registry_user, registry_password_file)
    options = DeployOptions(
        app_id=app_id, path=path, image=image, registry_login=registry_login, git=git, ref=ref,
        artefact=artefact, tag=tag, port=port,
        container_port=container_port, domain=domain, tls=tls.value if tls is not None else None,
        hsts_max_age=hsts, env=variables, memory=memory, cpu=cpu, health_path=health_path, export=export,
        restart=restart, replicas=replicas, placement=placement,
    )  # fmt: skip
    with api_for(context) as api:
        result = deploy_app(
            api,
            options,
            lambda title, task_id: follow_to_end(api, task_id, title, as_json=as_json),
            quiet=as_json,
        )
    emit(result, as_json, _deployed_text)


def tasks(
    app_id: Annotated[str | None, typer.Option("--app")] = None,
    status: Annotated[str | None, typer.Option()] = None,
    task_type: Annotated[str | None, typer.Option("--type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recent tasks, newest first."""
    with api_for(context) as api:
        page = api.get("/tasks", app_id=app_id, status=status, type=task_type, limit=limit)
    cols = ["task_id", "task_type", "status", "stage", "app_id", "created_at"]
    emit(page["tasks"], as_json, lambda rows: table(rows, cols))


def task(task_id: str, context: ContextOption = None, as_json: JsonOption = False) -> None:
    """One task: status, stage, result or error."""
    with api_for(context) as api:
        status = api.get(f"/tasks/status/{task_id}")
    emit(status, as_json, _task_text)


def logs(
    task_id: str,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Follow until the task ends.")] = False,
    tail: Annotated[int, typer.Option(min=1, max=10_000)] = 200,
    context: ContextOption = None,
) -> None:
    """A task's output: its last lines, or (-f) everything as it happens, resumed across drops."""
    with api_for(context) as api:
        if follow_:
            view = PlainView()
            final = follow(api, task_id, view.event)
            raise typer.Exit(0 if final["status"] == "completed" else EXIT_FAILED)
        found = api.get(f"/tasks/logs/{task_id}", tail=tail)
    for line in found["build_logs"].get("raw") or []:
        typer.echo(clean(str(line)))


def cancel(task_id: str, context: ContextOption = None) -> None:
    """Stop a running task."""
    with api_for(context) as api:
        status = api.post(f"/tasks/{task_id}/cancel")
    typer.echo(one_line(f"{task_id}: {status['status']}"))


def ps(
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Stopped containers too.")] = False,
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """Containers on the server."""
    with api_for(context) as api:
        rows = api.get("/docker/containers", all="true" if show_all else None)
    emit(rows, as_json, lambda r: table(r, ["name", "status", "app_id", "image_name", "ports"]))


def releases(app_id: str, context: ContextOption = None, as_json: JsonOption = False) -> None:
    """An app's releases, newest first."""
    with api_for(context) as api:
        rows = api.get(f"/apps/{app_id}/releases")
    cols = [
        "release",
        "status",
        "source",
        "created_at",
        "tag",
        "container_name",
        "host_port",
        "deployed_by",
    ]
    emit(rows, as_json, lambda r: table(r, cols))


def rollback(
    app_id: str,
    to: Annotated[
        int | None, typer.Option("--to", help="Release number; default: the one before the live one.")
    ] = None,
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run an earlier release again, health-gated, switching its sites without dropping requests."""
    with api_for(context) as api:
        started = api.post(f"/apps/{app_id}/rollback", {"release": to} if to else {})
        final = follow_to_end(
            api, started["task_id"], f"rollback {app_id} to {started['release']}", as_json=as_json
        )
    if final["status"] != "completed":
        raise fail(f"rollback {final['status']}: {final.get('error')}", EXIT_FAILED)
    result = final.get("result") or {}
    emit(
        result,
        as_json,
        lambda r: (
            f"{app_id}: release {r.get('release')} (= release {r.get('restored_release')}) "
            f"is live in {r.get('container_name') or str(r.get('replicas')) + ' replica(s)'}"
        ),
    )


def top(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """The busiest processes on the server."""
    with api_for(context) as api:
        found = api.get("/system/top", limit=limit)
    emit(
        found,
        as_json,
        lambda d: table(d["processes"], ["pid", "name", "cpu_percent", "memory_percent", "username"]),
    )


def usage(context: ContextOption = None, as_json: JsonOption = False) -> None:
    """CPU, memory and disk of the server."""
    with api_for(context) as api:
        found = api.get("/system/usage")
    emit(found, as_json, _usage_text)


def exec_(
    container: str,
    cmd: Annotated[list[str], typer.Argument(help="The command, after --.")],
    context: ContextOption = None,
) -> None:
    """Run a command in a container; its exit code is this command's."""
    with api_for(context) as api:
        done = api.post("/docker/exec", {"id_or_name": container, "cmd": cmd})
    # The container's own output, as it is (a user asked for it); a terminal shows it cleaned.
    out, err = str(done.get("stdout") or ""), str(done.get("stderr") or "")
    sys.stdout.write(clean(out) if sys.stdout.isatty() else out)
    sys.stderr.write(clean(err) if sys.stderr.isatty() else err)
    raise typer.Exit(int(done.get("exit_code") or 0) if done.get("exit_code") is not None else EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add the remote commands to the `docker-manager` command."""
    app.add_typer(certs)
    app.command(name="login")(login)
    app.command(name="logout")(logout)
    app.command(name="contexts")(contexts)
    app.command(name="deploy")(deploy)
    app.command(name="tasks")(tasks)
    app.command(name="task")(task)
    app.command(name="logs")(logs)
    app.command(name="cancel")(cancel)
    app.command(name="ps")(ps)
    app.command(name="releases")(releases)
    app.command(name="rollback")(rollback)
    app.command(name="top")(top)
    app.command(name="usage")(usage)
    app.command(name="exec")(exec_)
    app.command(name="doctor")(doctor)
    app.command(name="nodes")(nodes)
    app.command(name="scale")(scale)
    _listing(
        app,
        "apps",
        "/apps",
        ["app_id", "mode", "live_release", "state", "host_port", "replicas_desired", "domains"],
        "Apps and their live release.",
    )
    _listing(
        app, "sites", "/nginx/sites", ["domain", "app_id", "upstream", "kind"], "nginx sites of this service."
    )


def _listing(app: typer.Typer, name: str, path: str, columns: list[str], help_text: str) -> None:
    def command(context: ContextOption = None, as_json: JsonOption = False) -> None:
        with api_for(context) as api:
            rows = api.get(path)
        emit(rows, as_json, lambda r: table(r, columns))

    command.__doc__ = help_text
    app.command(name=name)(command)


def _deployed_text(result: dict[str, Any]) -> str:
    where = result.get("container_name") or f"{result.get('replicas')} replica(s) of {result.get('service')}"
    lines = [f"{result['app_id']}: release {result.get('release')} running in {where}"]
    if result.get("host_port"):
        lines.append(f"  port   127.0.0.1:{result['host_port']}")
    if result.get("domain"):
        lines.append(f"  domain {result['domain']}")
    lines.append(f"  took   {result['seconds']:.1f}s")
    return "\n".join(lines)


def _task_text(status: dict[str, Any]) -> str:
    lines = [f"{status['task_id']}  {status['task_type']}  {status['status']}  stage={status.get('stage')}"]
    if status.get("error"):
        lines.append(f"  error: {clean(str(status['error']))}")
    for event in status.get("events", [])[-10:]:
        message = clean(str(event.get("message") or ""))
        lines.append(f"  [{event.get('stage') or 'task'}] {event.get('status')} {message}")
    return "\n".join(lines)


def _usage_text(found: dict[str, Any]) -> str:
    memory, disk = found.get("memory") or {}, found.get("disk_root") or {}
    return (
        f"cpu {found.get('cpu_percent')}%  "
        f"memory {memory.get('percent')}% of {memory.get('total', 0) >> 20} MiB  "
        f"disk / {disk.get('percent')}% of {disk.get('total', 0) >> 30} GiB"
    )
