"""Command line: on the host `serve`, `token create|list|revoke` and `audit`; from anywhere the
remote client (`login`, `deploy`, `logs`, `rollback`...: see `client/`)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from docker_manager.client.commands import register
from docker_manager.client.terminal import PLAIN
from docker_manager.client.views import one_line
from docker_manager.errors import DockerManagerError

if TYPE_CHECKING:
    from docker_manager.services.observability.audit import AuditEntry
    from docker_manager.services.tokens.store import TokenStore

# The host commands import the server's modules when they run, never at start: the remote client
# (most invocations) loads only the client (tests/unit/test_cli_imports.py).

app = typer.Typer(help="docker-manager: the per-host Docker deployment agent.", no_args_is_help=True, **PLAIN)
token_app = typer.Typer(
    help="Manage API tokens (stored hashed; a secret is shown once).", no_args_is_help=True, **PLAIN
)
app.add_typer(token_app, name="token")
service_app = typer.Typer(help="Run the service under systemd.", no_args_is_help=True, **PLAIN)
app.add_typer(service_app, name="service")

T = TypeVar("T")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default DM_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default DM_PORT).")] = None,
) -> None:
    """Serve the API (one worker: tasks live in this process)."""
    import uvicorn

    from docker_manager.api.connections import ConnectionGuard, ConnectionLimits
    from docker_manager.app import create_app
    from docker_manager.config import Settings
    from docker_manager.logs import configure_logging

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    configure_logging(settings.log_format)
    guard = ConnectionGuard(
        ConnectionLimits.fitted(
            max_connections=settings.max_connections,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            send_timeout=settings.send_timeout,
        )
    )
    app = create_app(settings)
    # uvicorn below believes X-Forwarded-For from the named proxies only (by default from any
    # loopback peer): the client address the limiter and the audit see is the real one.
    app.state.peer_verified = True
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        http=guard.protocol(),
        ws="none",  # no WebSocket routes: an upgrade is not a way around the guard
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        workers=1,
        # With a stream open, uvicorn would otherwise never exit on SIGTERM (see docs/docker-adapter.md).
        timeout_graceful_shutdown=5,
        server_header=False,
        log_level="info",
        log_config=None,  # configure_logging's: one format for the service's lines and uvicorn's
        access_log=settings.access_log,
    )


def _with_store(action: Callable[[TokenStore], Awaitable[T]]) -> T:
    from docker_manager.services.tokens.store import TokenStore

    return _with_engine(lambda engine: action(TokenStore(engine)))


def _with_engine(action: Callable[[Any], Awaitable[T]]) -> T:
    """Run `action` with the service's database engine (migrated first), report errors plainly."""
    import asyncio

    from docker_manager.config import Settings
    from docker_manager.db import Database

    async def run() -> T:
        settings = Settings()
        settings.ensure_dirs()
        db = Database(settings.sqlalchemy_url)
        await db.open()
        try:
            return await action(db.engine)
        finally:
            await db.close()

    try:
        return asyncio.run(run())
    except DockerManagerError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc


def _parse_duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([hdw])", text.strip())
    if not match:
        raise typer.BadParameter("use a number with h, d or w, e.g. 12h, 30d, 8w")
    amount, unit = int(match.group(1)), match.group(2)
    return {"h": timedelta(hours=amount), "d": timedelta(days=amount), "w": timedelta(weeks=amount)}[unit]


@token_app.command("create")
def token_create(
    scope: Annotated[
        list[str], typer.Option("--scope", "-s", help="read, operate, exec, admin or metrics; repeatable.")
    ],
    name: Annotated[str, typer.Option(help="A label to recognise the token by.")] = "cli",
    expires: Annotated[str | None, typer.Option(help="Lifetime such as 12h, 30d, 8w; none = never.")] = None,
    app: Annotated[
        list[str] | None, typer.Option("--app", help="Limit it to this app (or prefix*); repeatable.")
    ] = None,
) -> None:
    """Create a token and print its secret (shown this once)."""
    from docker_manager.auth import parse_apps, parse_scopes

    scopes = parse_scopes([part for value in scope for part in value.split(",")])
    apps = parse_apps([part for value in app or [] for part in value.split(",")])
    expires_at = datetime.now(UTC) + _parse_duration(expires) if expires else None
    info, secret = _with_store(
        lambda store: store.create(name=name, scopes=scopes, expires_at=expires_at, apps=apps)
    )
    limited = f"  apps: {','.join(info.apps)}" if info.apps else ""
    typer.echo(
        f"id: {info.id}  scopes: {','.join(info.scopes)}  expires: {info.expires_at or 'never'}{limited}",
        err=True,
    )
    typer.echo(secret)


@token_app.command("list")
def token_list() -> None:
    """List tokens (never their secrets)."""
    for info in _with_store(lambda store: store.list()):
        state = "revoked" if info.revoked_at else "active"
        typer.echo(
            f"{info.id}  {info.prefix}…  {','.join(info.scopes):<24} {state:<8} "
            f"expires={info.expires_at.isoformat() if info.expires_at else 'never'}  {info.name}"
            + (f"  apps={','.join(info.apps)}" if info.apps else "")
        )


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The id shown by `token list`.")]) -> None:
    """Revoke a token; it stops working on its next request."""
    _with_store(lambda store: store.revoke(token_id))
    typer.echo(f"revoked {token_id}")


@app.command()
def audit(
    since: Annotated[str | None, typer.Option(help="Only entries newer than this, e.g. 12h, 30d.")] = None,
    token: Annotated[str | None, typer.Option(help="A token's id or name.")] = None,
    app_id: Annotated[str | None, typer.Option("--app", help="An app id.")] = None,
    outcome: Annotated[str | None, typer.Option(help="ok, denied, rejected or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Who changed what: the audit log, newest first (read from the database on this host)."""
    from docker_manager.services.observability.audit import AuditLog

    after = datetime.now(UTC) - _parse_duration(since) if since else None

    async def read(engine: Any) -> list[AuditEntry]:
        entries, _ = await AuditLog(engine).page(
            since=after, token=token, app_id=app_id, outcome=outcome, limit=limit
        )
        return entries

    for entry in _with_engine(read):
        data = entry.as_dict()
        if as_json:
            typer.echo(json.dumps(data, separators=(",", ":")))
            continue
        who = entry.token_name or "-"
        target = " ".join(f"{k}={v}" for k, v in entry.target.items())
        # Any field may hold what a caller sent: one line, no control characters, whoever reads it.
        typer.echo(
            one_line(
                f"{data['ts']}  {entry.status} {entry.outcome:<8} {who:<16} {entry.method:<6} {entry.route}"
                f"  {target}  [{entry.request_id}]"
            )
        )


@app.command()
def backup(
    file: Annotated[
        Path, typer.Argument(help="Where the archive goes (written 0600, complete or not at all).")
    ],
    passphrase_file: Annotated[
        Path, typer.Option(help="A file (mode 600) holding the passphrase, at least 12 characters.")
    ],
) -> None:
    """Back up this host's state (database, keys, sites, certificates, ACME accounts) into one
    sealed archive; works while the service runs. Reads the same settings as `serve`."""
    from docker_manager.config import Settings
    from docker_manager.services.backups.archive import read_passphrase
    from docker_manager.services.backups.options import BackupOptions
    from docker_manager.services.backups.service import write_backup_file

    try:
        passphrase = read_passphrase(passphrase_file, creating=True)
        written = write_backup_file(BackupOptions.of(Settings()), file, passphrase)
    except DockerManagerError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    except OSError as exc:  # (a full disk, a folder that cannot be written: no traceback)
        typer.echo(f"error: {_os_error(exc)}", err=True)
        raise typer.Exit(2) from exc
    manifest = written.manifest
    typer.echo(
        f"wrote {written.path} ({written.size} bytes): {len(manifest.members)} files, "
        f"database schema {manifest.schema_revision}"
    )


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="An archive `docker-manager backup` wrote.")],
    passphrase_file: Annotated[Path, typer.Option(help="The file holding the archive's passphrase.")],
    force: Annotated[
        bool, typer.Option(help="Replace a data folder that holds files (it is kept aside, renamed).")
    ] = False,
    check_only: Annotated[bool, typer.Option(help="Only check the archive and its passphrase.")] = False,
) -> None:
    """Restore an archive into this host's DM_DATA_DIR, sites and certificates (the service
    stopped): every checksum is checked before anything is written."""
    import asyncio

    from docker_manager.config import Settings
    from docker_manager.runtime import nginx_of
    from docker_manager.services.backups import restore as restoring
    from docker_manager.services.backups.archive import read_passphrase
    from docker_manager.services.backups.options import BackupOptions

    settings = Settings()
    try:
        passphrase = read_passphrase(passphrase_file, creating=False)
        if check_only:
            manifest = restoring.verify(file, passphrase)
            typer.echo(
                f"ok: {len(manifest.members)} files, written {manifest.created_at} by {manifest.version}"
            )
            return
        report = asyncio.run(
            restoring.restore(
                BackupOptions.of(settings), file, passphrase, force=force, nginx=nginx_of(settings)
            )
        )
    except DockerManagerError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    except OSError as exc:
        typer.echo(f"error: {_os_error(exc)}", err=True)
        raise typer.Exit(2) from exc
    for line in restoring.describe(report):
        typer.echo(line)


def _os_error(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


@service_app.command("install")
def service_install(
    unit_dir: Annotated[Path, typer.Option(help="Where unit files go.")] = Path("/etc/systemd/system"),
    enable: Annotated[bool, typer.Option(help="Reload systemd and enable + start it now.")] = True,
) -> None:
    """Write the systemd unit (restart on failure, after docker and nginx, the data folder these
    settings name as its state) and enable it; settings go in /etc/docker-manager/env."""
    from docker_manager import systemd
    from docker_manager.config import Settings, config_file_path

    settings = Settings()
    config = config_file_path().resolve() if config_file_path().is_file() else None
    try:
        target, steps = systemd.install(
            unit_dir, data_dir=settings.data_dir.resolve(), config=config, enable=enable
        )
    except systemd.UnsafeInstallation as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {target} (data folder {settings.data_dir.resolve()})")
    for step in steps:
        typer.echo(f"  {step}")


register(app)


def main() -> None:
    app(prog_name="docker-manager")


if __name__ == "__main__":
    main()
