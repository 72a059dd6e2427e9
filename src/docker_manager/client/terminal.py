"""What every remote command shares: the API client of a context, output as text or JSON, exit
codes with a message, tables, and following a task to its end."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from docker_manager.client import config as client_config
from docker_manager.client.config import ConfigError
from docker_manager.client.errors import EXIT_USAGE, ClientError
from docker_manager.client.follow import follow
from docker_manager.client.views import PlainView, QuietView, TaskView, clean

if TYPE_CHECKING:
    from docker_manager.client.api import Api

# Plain help and errors: typer's rich formatting costs more than the rest of a client command's
# start-up together (measured: --help 0.35 s against 0.18 s).
PLAIN: dict[str, Any] = {"rich_markup_mode": None, "pretty_exceptions_enable": False}

ContextOption = Annotated[str | None, typer.Option("--context", "-c", help="A context saved by `login`.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@contextmanager
def api_for(context: str | None) -> Iterator[Api]:
    """An API client for the chosen context; client errors become exit codes with a message."""
    from docker_manager.client.api import Api  # (the HTTP library only for calls to the server)

    try:
        with Api(client_config.resolve(context)) as api:
            yield api
    except ConfigError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except ClientError as exc:
        raise fail(exc.message, exc.exit_code) from None


def emit(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    typer.echo(json.dumps(data, indent=None, default=str) if as_json else clean(text(data)))


def fail(message: str, exit_code: int) -> typer.Exit:
    typer.echo(f"error: {clean(message)}", err=True)
    return typer.Exit(exit_code)


_PORT_KEY = re.compile(r"^\d{1,5}/(tcp|udp|sctp)$")


def cell(value: Any) -> str:
    """A value as a person reads it in a table: ports as `80/tcp→18080`, lists joined, mappings as
    `k=v`, yes/no; never a Python repr."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        if all(_PORT_KEY.match(str(key)) for key in value):
            return ", ".join(f"{key}→{port}" if port else str(key) for key, port in value.items())
        return ", ".join(f"{key}={cell(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(cell(item) for item in value)
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[clean(cell(row.get(col))) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    lines = ["  ".join(col.upper().ljust(widths[i]) for i, col in enumerate(columns))]
    lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def follow_to_end(api: Api, task_id: str, title: str, *, as_json: bool) -> dict[str, Any]:
    """Follow a task with the right view; Ctrl-C asks (on a terminal) whether to cancel it."""
    view = view_for(title, as_json=as_json)
    try:
        return follow(api, task_id, view.event)
    except KeyboardInterrupt:
        view.close()
        if sys.stdin.isatty() and typer.confirm(f"\ncancel task {task_id}?", default=False):
            api.post(f"/tasks/{task_id}/cancel")
            typer.echo(f"cancelled {task_id}", err=True)
        else:
            typer.echo(f"detached; follow again with: docker-manager logs {task_id} -f", err=True)
        raise typer.Exit(130) from None
    finally:
        view.close()


def view_for(title: str, *, as_json: bool) -> TaskView:
    if as_json:
        return QuietView()
    if sys.stdout.isatty():
        from docker_manager.client.live import LiveView  # (rich: only for a terminal)

        return LiveView(title)
    return PlainView()
