"""`docker-manager certs`: the HTTPS certificates of the server's sites.

`certs` lists them with their status and days left (the first place to look when a site's
certificate is near its end); `certs issue DOMAIN` orders one now and follows the task; `certs
upload` gives one by hand (never replaced by the CA unless asked); `certs delete` removes one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from docker_manager.client.errors import EXIT_FAILED, EXIT_USAGE
from docker_manager.client.terminal import (
    PLAIN,
    ContextOption,
    JsonOption,
    api_for,
    emit,
    fail,
    follow_to_end,
    table,
)

certs = typer.Typer(
    name="certs",
    help="HTTPS certificates: list (default), show, issue, upload, delete.",
    invoke_without_command=True,
    **PLAIN,
    no_args_is_help=False,
)
COLUMNS = ["domain", "status", "source", "days_left", "renew_at", "error"]


@certs.callback()
def listing(ctx: typer.Context, context: ContextOption = None, as_json: JsonOption = False) -> None:
    """Every certificate: status, source, days left, when it renews, its last error."""
    if ctx.invoked_subcommand is not None:
        return
    with api_for(context) as api:
        rows = api.get("/certificates")
    emit(rows, as_json, lambda found: table([_row(record) for record in found], COLUMNS))


@certs.command()
def show(domain: str, context: ContextOption = None, as_json: JsonOption = False) -> None:
    """One certificate, every field."""
    with api_for(context) as api:
        record = api.get(f"/certificates/{quote(domain, safe='')}")
    emit(record, as_json, _details)


@certs.command()
def issue(
    domain: str,
    force: Annotated[bool, typer.Option(help="Also when a valid (or hand-given) one is there.")] = False,
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """Order a certificate for DOMAIN now and follow the order to its end."""
    with api_for(context) as api:
        path = f"/certificates/{quote(domain, safe='')}/issue" + ("?force=true" if force else "")
        started = api.post(path)
        final = follow_to_end(api, started["task_id"], f"certificate {domain}", as_json=as_json)
        record = api.get(f"/certificates/{quote(domain, safe='')}")
    if final["status"] != "completed":
        raise fail(f"the order {final['status']}: {final.get('error') or 'see its logs'}", EXIT_FAILED)
    emit(record, as_json, _details)


@certs.command()
def upload(
    domain: str,
    cert: Annotated[Path, typer.Option(help="The certificate, then its chain (PEM).")],
    key: Annotated[Path, typer.Option(help="Its private key (PEM, unencrypted).")],
    context: ContextOption = None,
    as_json: JsonOption = False,
) -> None:
    """Serve DOMAIN with a certificate given by hand (checked: key, names, dates)."""
    try:
        body = {"certificate_pem": cert.read_text(), "private_key_pem": key.read_text()}
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read the certificate or key file: {exc}", EXIT_USAGE) from None
    with api_for(context) as api:
        record = api.call("PUT", f"/certificates/{quote(domain, safe='')}", json=body)
    emit(record, as_json, _details)


@certs.command()
def delete(domain: str, context: ContextOption = None, as_json: JsonOption = False) -> None:
    """Remove DOMAIN's certificate and key; its site serves plain HTTP again."""
    with api_for(context) as api:
        done = api.call("DELETE", f"/certificates/{quote(domain, safe='')}")
    emit(done, as_json, lambda _: f"{domain}: certificate removed")


def _row(record: dict[str, Any]) -> dict[str, Any]:
    error = record.get("last_error") or {}
    days = record.get("days_left")
    return {
        **record,
        "days_left": f"{days:.1f}" if isinstance(days, int | float) else None,
        "renew_at": (record.get("renew_at") or "")[:16] or None,
        "error": error.get("type"),
    }


def _details(record: dict[str, Any]) -> str:
    lines = [f"{record['domain']}: {record['status']} ({record['source']})"]
    for name in ("not_before", "not_after", "days_left", "renew_at", "serial", "issuer", "next_attempt_at"):
        if record.get(name) is not None:
            lines.append(f"  {name:<15} {record[name]}")
    if record.get("sans"):
        lines.append(f"  {'names':<15} {', '.join(record['sans'])}")
    error = record.get("last_error")
    if error:
        permanent = " (permanent: not retried until asked)" if record.get("permanent_error") else ""
        lines.append(f"  {'last error':<15} {error.get('type')}: {error.get('detail')}{permanent}")
    if not record.get("served_by_site", True):
        lines.append("  no site serves this domain: it is not renewed")
    return "\n".join(lines)
