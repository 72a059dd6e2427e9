"""Every route needs a bearer token with a scope; tokens are stored hashed and can be revoked."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute

from docker_manager.api.deps import RequireScope
from docker_manager.app import create_app
from docker_manager.auth import Scope
from docker_manager.config import Settings
from docker_manager.db.tables import api_tokens
from docker_manager.runtime import Runtime
from docker_manager.services.tokens import store as token_store
from docker_manager.services.tokens.store import digest_of
from tests.conftest import Tokens
from tests.harness import app_client

# Also run against PostgreSQL by scripts/test.sh (`-m postgres`).
pytestmark = pytest.mark.postgres

# Routes that answer without a token, and why.
PUBLIC = {
    "/healthz",  # load balancers and the operator's first check; reveals only "engine reachable"
    "/docs",  # interactive docs (DM_PUBLIC_DOCS=false turns these off)
    "/openapi.json",
    # a CA's HTTP-01 check (nginx forwards it): answers only tokens of an order running now
    "/.well-known/acme-challenge/{token}",
}


def scope_rule(route: APIRoute) -> RequireScope | None:
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, RequireScope):
            return dep.call
        stack.extend(dep.dependencies)
    return None


def required_scope(route: APIRoute) -> Scope | None:
    rule = scope_rule(route)
    return rule.scope if rule is not None else None


def _flatten(routes: list[Any]) -> Iterator[Any]:
    # FastAPI keeps included routers as nodes of their own; their routes sit below.
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flatten(inner.routes)
        else:
            yield route


def api_routes(settings: Settings) -> list[APIRoute]:
    """The API's routes (the dashboard's, under /ui, check their session cookie instead: see
    test_every_dashboard_route_needs_a_session)."""
    return [
        r
        for r in _flatten(create_app(settings).routes)
        if isinstance(r, APIRoute) and not r.path.startswith("/ui")
    ]


async def test_every_dashboard_route_needs_a_session(
    client: httpx2.AsyncClient, settings: Settings, tokens: Tokens
) -> None:
    """Without a session cookie (a bearer token is not one) every /ui route but the login page
    sends to the login page, or answers 401 for its data; it never shows or does anything."""
    ui = [
        r
        for r in _flatten(create_app(settings).routes)
        if isinstance(r, APIRoute) and r.path.startswith("/ui")
    ]
    assert len(ui) > 15
    for route in ui:
        for method in route.methods:
            response = await client.request(
                method, concrete(route.path), headers=tokens.headers(Scope.ADMIN), data={"csrf": "x"}
            )
            if route.path == "/ui/login":
                assert response.status_code in (200, 401), (method, route.path)
                continue
            assert response.status_code in (303, 401), (method, route.path, response.status_code)
            if response.status_code == 303:
                assert response.headers["location"] == "/ui/login"


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_every_route_declares_a_scope(settings: Settings) -> None:
    missing = [r.path for r in api_routes(settings) if r.path not in PUBLIC and required_scope(r) is None]
    assert missing == []
    # And the walk itself sees something: the test would be empty if the app had no routes.
    assert len(api_routes(settings)) > 20


def test_openapi_marks_every_operation_as_needing_the_bearer_token(settings: Settings) -> None:
    schema = create_app(settings).openapi()
    operations = [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]
    walked = {(r.path, m.lower()) for r in api_routes(settings) for m in r.methods if r.include_in_schema}
    assert {(path, method) for path, method, _ in operations} == walked
    unsecured = [(p, m) for p, m, op in operations if p not in PUBLIC and not op.get("security")]
    assert unsecured == []


async def test_every_route_refuses_a_missing_or_unknown_token(
    client: httpx2.AsyncClient, settings: Settings
) -> None:
    for route in api_routes(settings):
        if route.path in PUBLIC:
            continue
        for method in route.methods:
            for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YTpi"}):
                response = await client.request(method, concrete(route.path), headers=headers)
                assert response.status_code == 401, (method, route.path, response.text)
                assert response.json()["code"] == "unauthorized"
                assert response.headers["www-authenticate"] == "Bearer"


async def test_every_route_refuses_a_token_without_its_scope(
    client: httpx2.AsyncClient, settings: Settings, tokens: Tokens
) -> None:
    checked = 0
    for route in api_routes(settings):
        rule = scope_rule(route)
        if rule is None:
            continue
        # Every other scope is refused, but those the route accepts as well (/metrics: read).
        others = [
            s
            for s in (Scope.READ, Scope.OPERATE, Scope.EXEC, Scope.METRICS)
            if s != rule.scope and s not in rule.also
        ]
        for method in route.methods:
            for other in others:
                response = await client.request(method, concrete(route.path), headers=tokens.headers(other))
                assert response.status_code == 403, (method, route.path, other, response.text)
                assert response.json()["code"] == "insufficient_scope"
                checked += 1
    assert checked > 40


async def test_token_in_query_string_is_ignored(client: httpx2.AsyncClient, tokens: Tokens) -> None:
    response = await client.get(
        "/docker/images", params={"token": tokens.admin, "access_token": tokens.admin}
    )
    assert response.status_code == 401


async def test_token_lifecycle_through_the_api(client: httpx2.AsyncClient, admin: dict[str, str]) -> None:
    created = await client.post(
        "/auth/tokens", json={"name": "dashboard", "scopes": ["read"], "expires_in_days": 1}, headers=admin
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret, token_id = body["token"], body["id"]
    mine = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/docker/images", headers=mine)).status_code == 200
    assert (await client.post("/docker/prune", headers=mine)).status_code == 403

    listed = (await client.get("/auth/tokens", headers=admin)).json()
    assert any(t["id"] == token_id and t["scopes"] == ["read"] for t in listed)
    assert secret not in str(listed)

    assert (await client.delete(f"/auth/tokens/{token_id}", headers=admin)).status_code == 204
    assert (await client.get("/docker/images", headers=mine)).status_code == 401
    assert (await client.delete(f"/auth/tokens/{token_id}", headers=admin)).status_code == 404


async def test_tokens_are_stored_only_as_hashes(services: Runtime, tokens: Tokens) -> None:
    secret = tokens.by_scope[Scope.READ]
    async with services.db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(api_tokens))).all()
    stored = json.dumps([[str(value) for value in row] for row in rows])
    assert secret not in stored and digest_of(secret) in stored
    if not services.settings.sqlalchemy_url.startswith("sqlite"):
        return
    db_file = Path(services.settings.sqlalchemy_url.split("///", 1)[1])
    files = [str(p) for p in db_file.parent.glob(db_file.name + "*")]

    # The raw SQLite files too (the WAL included), read from another process: opening and closing
    # them here would drop this process's SQLite locks (POSIX locks belong to the process).
    def occurs(needle: str) -> bool:
        found = subprocess.run(["grep", "-c", "-a", "-F", needle, *files], capture_output=True, text=True)
        return any(int(line.rsplit(":", 1)[1]) > 0 for line in found.stdout.split())

    assert not occurs(secret)
    assert occurs(digest_of(secret))


async def test_expired_token_is_refused(services: Runtime, client: httpx2.AsyncClient) -> None:
    _, secret = await services.tokens.create(
        name="old", scopes=frozenset({Scope.READ}), expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    response = await client.get("/docker/images", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401


def test_cli_creates_lists_and_revokes_tokens(settings: Settings, client: httpx2.AsyncClient) -> None:
    env = {**os.environ, "DM_DATA_DIR": str(settings.data_dir)}
    cli = [sys.executable, "-m", "docker_manager", "token"]
    created = subprocess.run(
        [*cli, "create", "--scope", "read", "--name", "ci", "--expires", "1d"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    secret = created.stdout.strip()
    assert secret.startswith("dm_")
    listing = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, check=True).stdout
    assert "ci" in listing and secret not in listing
    token_id = re.search(r"id: ([a-f0-9]{16})", created.stderr)
    assert token_id
    subprocess.run([*cli, "revoke", token_id.group(1)], env=env, check=True, capture_output=True)
    bad = subprocess.run([*cli, "create", "--scope", "root"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown scope" in bad.stderr


async def test_first_start_writes_an_admin_token_file_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    async with app_client(settings) as (_, client):
        token_file = tmp_path / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        ok = await client.get("/auth/tokens", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    token_file.unlink()
    async with app_client(settings):
        assert not token_file.exists()  # an admin token exists already: nothing new is minted


@pytest.mark.parametrize("public", ["/healthz"])
async def test_public_routes_need_no_token(client: httpx2.AsyncClient, public: str) -> None:
    response = await client.get(public)
    assert response.status_code == 200
    assert set(response.json()) == {"status", "docker"}


async def test_a_token_revoked_elsewhere_stops_within_the_cache_time_and_one_refresh(
    services: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its cache time a token is refreshed by one look-up in the background while callers go
    on (all of them waiting on the database at once made the status route's slowest 1 %); the
    look-up's answer then holds. A revocation through the service holds at once."""
    monkeypatch.setattr(token_store, "AUTH_CACHE_SECONDS", 0.2)
    monkeypatch.setattr(token_store, "AUTH_STALE_SECONDS", 5.0)
    store = services.tokens
    info, secret = await store.create(name="cached", scopes=frozenset({Scope.READ}))
    assert await store.authenticate(secret) is not None
    look_ups = 0
    real_look_up = store._principal_of

    async def counted(digest: str) -> Any:
        nonlocal look_ups
        look_ups += 1
        return await real_look_up(digest)

    monkeypatch.setattr(store, "_principal_of", counted)
    # Revoked by another process (the CLI writes the database directly).
    async with services.db.engine.begin() as conn:
        await conn.execute(
            api_tokens.update().where(api_tokens.c.id == info.id).values(revoked_at=datetime.now(UTC))
        )
    assert await store.authenticate(secret) is not None  # within the cache time
    await asyncio.sleep(0.25)
    answers = await asyncio.gather(*(store.authenticate(secret) for _ in range(20)))
    assert all(a is not None for a in answers)  # stale while one refresh runs...
    await asyncio.gather(*store._refreshes)
    assert look_ups == 1  # ...and only one
    assert await store.authenticate(secret) is None

    other, other_secret = await store.create(name="revoked-here", scopes=frozenset({Scope.READ}))
    assert await store.authenticate(other_secret) is not None
    await asyncio.sleep(0.25)
    assert await store.authenticate(other_secret) is not None  # starts a refresh
    await store.revoke(other.id)
    assert await store.authenticate(other_secret) is None  # at once, refresh or not
    await asyncio.gather(*store._refreshes)
    assert await store.authenticate(other_secret) is None


async def test_a_token_past_its_stale_time_is_checked_before_answering(
    services: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_store, "AUTH_CACHE_SECONDS", 0.1)
    monkeypatch.setattr(token_store, "AUTH_STALE_SECONDS", 0.1)
    info, secret = await services.tokens.create(name="idle", scopes=frozenset({Scope.READ}))
    assert await services.tokens.authenticate(secret) is not None
    async with services.db.engine.begin() as conn:
        await conn.execute(
            api_tokens.update().where(api_tokens.c.id == info.id).values(revoked_at=datetime.now(UTC))
        )
    await asyncio.sleep(0.3)
    assert await services.tokens.authenticate(secret) is None
