"""HTTP calls to the service, with errors a person at a terminal (or a script) can act on.

Exit codes: 0 success, 1 the operation failed (the server's `code` and `detail`), 2 usage error,
3 the service cannot be reached or refused the token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2

from docker_manager.client.config import Context
from docker_manager.client.errors import EXIT_UNREACHABLE, ClientError, StreamBroken

_HINTS = {
    "insufficient_scope": "this token lacks the scope; ask an admin for one that has it",
    "not_managed": "only an admin token may touch what this service did not create",
    "insufficient_storage": "free disk space on the server (docker-manager gc, or `POST /system/gc`)",
    "queue_full": "the server is busy; try again in a moment",
    "port_in_use": "choose another --port",
}


def failure(response: httpx2.Response) -> ClientError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = str(body.get("code") or f"http_{response.status_code}")
    detail = str(body.get("detail") or response.text[:300] or response.reason_phrase)
    if response.status_code == 401:
        return ClientError(
            f"the server refused the token ({detail}); run `docker-manager login` again",
            exit_code=EXIT_UNREACHABLE,
            code=code,
        )
    hint = _HINTS.get(code)
    return ClientError(f"{code}: {detail}" + (f"\n  hint: {hint}" if hint else ""), code=code)


class Api:
    def __init__(self, context: Context, *, timeout: float = 600.0) -> None:
        self.context = context
        self._http = httpx2.Client(
            base_url=context.url,
            headers={"Authorization": f"Bearer {context.token}", "User-Agent": "docker-manager-cli"},
            timeout=httpx2.Timeout(timeout, connect=10.0),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx2.TransportError as exc:
            raise ClientError(
                f"cannot reach {self.context.url}: {exc}", exit_code=EXIT_UNREACHABLE, code="unreachable"
            ) from exc
        if response.status_code >= 400:
            raise failure(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, json=body or {})

    def events(self, task_id: str, *, after: int) -> Iterator[dict[str, Any]]:
        """The task's events after `after`, as the server streams them (NDJSON), until the final
        one or until the connection drops (the caller resumes from the last seq it saw)."""
        params: dict[str, str | int] = {"format": "ndjson", "after": after}
        # The server sends a keep-alive line every 15 s: a minute of silence is a dead connection.
        timeout = httpx2.Timeout(60.0, connect=10.0)
        path = f"/tasks/{task_id}/events"
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.status_code >= 500:
                    raise StreamBroken(f"HTTP {response.status_code}")  # a restart: try again
                if response.status_code >= 400:
                    response.read()
                    raise failure(response)
                yield {"connected": True}
                for line in response.iter_lines():
                    if not line.strip():
                        continue  # keep-alive
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue
        except httpx2.TransportError as exc:
            raise StreamBroken(str(exc)) from exc
