"""Host header, body size, CORS and the error shape: the guards in front of every route."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2


async def test_foreign_host_header_is_refused(client: httpx2.AsyncClient, admin: dict[str, str]) -> None:
    for host in ("evil.com", "attacker.rebind.tld", "127.0.0.1.nip.io"):
        response = await client.get("/docker/images", headers={**admin, "Host": host})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_host"
    for host in ("localhost:8002", "127.0.0.1", "[::1]:8002"):
        response = await client.get("/docker/images", headers={**admin, "Host": host})
        assert response.status_code == 200, host


async def test_no_cors_headers_by_default(client: httpx2.AsyncClient) -> None:
    response = await client.options(
        "/docker/images",
        headers={"Origin": "https://evil.com", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers


async def test_oversized_body_is_413_before_parsing(
    client: httpx2.AsyncClient, admin: dict[str, str]
) -> None:
    big = b'{"image": "' + b"a" * (2 << 20) + b'"}'
    response = await client.post(
        "/docker/run", content=big, headers={**admin, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_oversized_chunked_body_is_413(client: httpx2.AsyncClient, admin: dict[str, str]) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"image": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}'

    response = await client.post(
        "/docker/run", content=body(), headers={**admin, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_validation_errors_have_the_error_shape_without_echoing_input(
    client: httpx2.AsyncClient, operate: dict[str, str]
) -> None:
    secret = "s3cr3t-value-with-NUL\x00"
    response = await client.post("/docker/run", json={"image": "bb", "env": {"K": secret}}, headers=operate)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["field"] == "env"
    assert "s3cr3t" not in response.text
    empty = await client.post("/docker/run", headers=operate)
    assert empty.status_code == 422
    garbage = await client.post(
        "/docker/run", content=b"{not json", headers={**operate, "Content-Type": "application/json"}
    )
    assert garbage.status_code == 422
    nan = await client.post(
        "/docker/run",
        content=b'{"image":"bb","cpu":NaN}',
        headers={**operate, "Content-Type": "application/json"},
    )
    assert nan.status_code == 422


async def test_unknown_route_is_json_404(client: httpx2.AsyncClient, read: dict[str, str]) -> None:
    response = await client.get("/nope", headers=read)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    # Without a token nothing past the gate is told apart, not even whether a route exists.
    assert (await client.get("/nope")).status_code == 401
