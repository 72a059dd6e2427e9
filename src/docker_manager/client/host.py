"""The server's host as a terminal shows it: `doctor` (its checks, each problem with its fix),
`nodes` (the swarm its engine belongs to) and `scale` (a swarm app's replicas)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from docker_manager.client.errors import EXIT_FAILED
from docker_manager.client.terminal import (
    ContextOption,
    JsonOption,
    api_for,
    emit,
    fail,
    follow_to_end,
    table,
)


def nodes(context: ContextOption = None, as_json: JsonOption = False) -> None:
    """The swarm's nodes (asked of a manager): role, availability, state, address, replicas."""
    with api_for(context) as api:
        found = api.get("/swarm")
    columns = ["hostname", "role", "leader", "availability", "state", "addr", "running_replicas", "id"]
    if found.get("nodes") is None:
        where = f"; its managers: {', '.join(found['managers'])}" if found.get("managers") else ""
        text = f"this engine is {found.get('role') or 'not in a swarm'} ({found['state']}){where}"
        emit(found, as_json, lambda _: text)
        return
    emit(found["nodes"], as_json, lambda rows: table(rows, columns))


def scale(
    app_id: str,
    replicas: Annotated[int, typer.Argument(min=0, max=64, help="How many replicas.")],
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """A swarm app's replica count; done when as many run (its sites follow them)."""
    with api_for(context) as api:
        started = api.post(f"/apps/{quote(app_id, safe='')}/scale", {"replicas": replicas})
        final = follow_to_end(api, started["task_id"], f"scale {app_id} to {replicas}", as_json=as_json)
        if final["status"] != "completed":
            raise fail(f"scale {final['status']}: {final.get('error')}", EXIT_FAILED)
        found = api.get(f"/apps/{quote(app_id, safe='')}")
    columns = ["slot", "node", "state", "health", "address", "error"]
    emit(found.get("replicas") or [], as_json, lambda rows: table(rows, columns))


def doctor(context: ContextOption = None, as_json: JsonOption = False) -> None:
    """What the server's host needs, checked (engine, nginx, folders, disk, modes, database, clock,
    ports, certificates): each problem with its fix. Exit 0 when all pass, 1 otherwise."""
    with api_for(context) as api:
        report = api.get("/system/doctor")
    emit(report, as_json, _doctor_text)
    if not report["ok"]:
        raise typer.Exit(EXIT_FAILED)


def _doctor_text(report: dict[str, Any]) -> str:
    width = max((len(check["name"]) for check in report["checks"]), default=0)
    lines = []
    for check in report["checks"]:
        mark = "ok  " if check["ok"] else "FAIL"
        lines.append(f"{mark}  {check['name']:<{width}}  {check['detail']}")
        if not check["ok"] and check.get("fix"):
            lines.append(f"      {'':<{width}}  fix: {check['fix']}")
    failed = sum(not check["ok"] for check in report["checks"])
    lines.append("all checks pass" if not failed else f"{failed} problem(s)")
    return "\n".join(lines)
