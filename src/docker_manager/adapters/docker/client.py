"""HTTP transport to the Docker Engine API over its unix socket (or TCP), on httpx2.

Why our own client rather than aiodocker or docker-py: see `docs/docker-adapter.md` and
`docs/design.md`. In short: request bodies can be async streams (build contexts, image loads), response
streams keep stdout and stderr apart, errors raised inside a body generator come through unchanged,
and every default (timeouts, version) is ours.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx2

from docker_manager import metrics
from docker_manager.adapters.docker import rawstream
from docker_manager.errors import (
    Conflict,
    DockerManagerError,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    InvalidInput,
    NotFound,
    PortInUse,
)

# The range of Engine API versions this client speaks. 1.41 is Docker 20.10 (Debian 12); Docker 29
# refuses anything below 1.44. We speak min(NEWEST, engine's newest) and refuse engines below OLDEST.
OLDEST_API = (1, 41)
NEWEST_API = (1, 47)

_PORT_TAKEN = ("port is already allocated", "address already in use", "bind for")


def _version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def map_engine_error(status: int, message: str) -> DockerManagerError:
    """The service error for an engine error response."""
    lowered = message.lower()
    if any(marker in lowered for marker in _PORT_TAKEN):
        return PortInUse(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status == 400:
        return InvalidInput(message)
    return EngineError(f"engine error {status}: {message}")


def _message_of(body: bytes) -> str:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body.decode("utf-8", "replace").strip()[:2000]
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])
    return str(data)[:2000]


class DockerTransport:
    """Versioned requests to the engine with the service's error mapping."""

    def __init__(self, host: str, *, timeout: float) -> None:
        self.timeout = timeout
        self._uds: str | None = None
        self._tcp: str | None = None
        if host.startswith("unix://"):
            self._uds = host.removeprefix("unix://")
            transport = httpx2.AsyncHTTPTransport(uds=self._uds)
            base_url = "http://docker"
        elif host.startswith(("tcp://", "http://")):
            self._tcp = host.split("://", 1)[1].rstrip("/")
            transport = httpx2.AsyncHTTPTransport()
            base_url = "http://" + self._tcp
        else:
            raise ValueError(f"unsupported docker host {host!r} (use unix:// or tcp://)")
        self._http = httpx2.AsyncClient(
            transport=transport,
            base_url=base_url,
            timeout=httpx2.Timeout(timeout),
            # Each live stream (logs, builds) holds a connection; short calls must not queue behind them.
            limits=httpx2.Limits(max_connections=200, max_keepalive_connections=20),
            trust_env=False,
        )
        self._version: str | None = None
        self._version_lock = asyncio.Lock()
        self.engine_version: dict[str, Any] = {}

    async def close(self) -> None:
        await self._http.aclose()

    async def api_version(self) -> str:
        """Negotiate once: the newest version both sides speak."""
        if self._version is not None:
            return self._version
        async with self._version_lock:
            if self._version is None:
                response = await self._send("GET", "/version", timeout=self.timeout)
                data = response.json()
                engine_max = _version_tuple(str(data.get("ApiVersion", "1.41")))
                engine_min = _version_tuple(str(data.get("MinAPIVersion", "1.12")))
                chosen = min(NEWEST_API, engine_max)
                if chosen < OLDEST_API or chosen < engine_min:
                    raise EngineUnavailable(
                        f"engine API {data.get('ApiVersion')} is outside the supported range "
                        f"{OLDEST_API[0]}.{OLDEST_API[1]}..{NEWEST_API[0]}.{NEWEST_API[1]}"
                    )
                self.engine_version = data
                self._version = f"{chosen[0]}.{chosen[1]}"
        return self._version

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None,
        stream: bool = False,
    ) -> httpx2.Response:
        request = self._http.build_request(
            method,
            url,
            params=_clean_params(params),
            json=json_body,
            content=content,
            headers=headers,
            timeout=httpx2.Timeout(timeout) if timeout is not None else httpx2.Timeout(None, connect=10),
        )
        started = time.monotonic()
        try:
            try:
                response = await self._http.send(request, stream=stream)
            except httpx2.TimeoutException as exc:
                raise EngineTimeout(f"the Docker engine did not answer {method} {url} in time") from exc
            except (httpx2.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
                metrics.ENGINE_UP.set(0)
                raise EngineUnavailable("the Docker engine cannot be reached") from exc
            except httpx2.RemoteProtocolError as exc:
                raise EngineUnavailable(f"the Docker engine closed the connection: {exc}") from exc
            metrics.ENGINE_UP.set(1)
            if response.status_code >= 400:
                body = await response.aread()
                await response.aclose()
                raise map_engine_error(response.status_code, _message_of(body))
        except DockerManagerError as exc:
            metrics.ENGINE_ERRORS.labels(code=exc.code).inc()
            raise
        finally:
            metrics.ENGINE_DURATION.labels(operation=operation_of(method, url)).observe(
                time.monotonic() - started
            )
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | str | None = "default",
    ) -> httpx2.Response:
        """A short call: the whole response is read; `timeout` defaults to the configured one."""
        version = await self.api_version()
        return await self._send(
            method,
            f"/v{version}{path}",
            params=params,
            json_body=json_body,
            content=content,
            headers=headers,
            timeout=self.timeout if timeout == "default" else timeout,  # type: ignore[arg-type]
        )

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        if not response.content:
            return None
        return response.json()

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[httpx2.Response]:
        """A long call whose response is read as it arrives. No read timeout unless given."""
        version = await self.api_version()
        response = await self._send(
            method,
            f"/v{version}{path}",
            params=params,
            json_body=json_body,
            content=content,
            headers=headers,
            timeout=timeout,
            stream=True,
        )
        try:
            yield response
        except httpx2.RemoteProtocolError as exc:
            raise EngineError(f"the Docker engine broke off the stream: {exc}") from exc
        except httpx2.ReadError as exc:
            raise EngineError(f"reading from the Docker engine failed: {exc}") from exc
        finally:
            await response.aclose()

    @asynccontextmanager
    async def download(
        self, path: str, *, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A GET whose (large) body is read on a dedicated connection, fast (see `rawstream`)."""
        version = await self.api_version()
        try:
            response = await rawstream.get(
                uds=self._uds,
                host=self._tcp,
                path=f"/v{version}{path}",
                params=_clean_params(params),
                timeout=self.timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise EngineUnavailable("the Docker engine cannot be reached") from exc
        except rawstream.RawStreamError as exc:
            raise EngineError(str(exc)) from exc
        try:
            if response.status >= 400:
                raise map_engine_error(response.status, _message_of(await response.read_all()))
            try:
                yield response.body()
            except rawstream.RawStreamError as exc:
                raise EngineError(f"the Docker engine broke off the stream: {exc}") from exc
        finally:
            await response.close()


_RESOURCES = frozenset({"containers", "images", "exec", "volumes", "networks", "plugins", "distribution"})
_COLLECTION = frozenset({"json", "create", "prune", "load", "get", "search"})
_ACTIONS = frozenset(
    {
        "json", "start", "stop", "restart", "kill", "pause", "unpause", "wait", "logs", "stats", "exec",
        "archive", "rename", "attach", "resize", "top", "changes", "export", "update", "push", "tag",
        "history", "get",
    }
)  # fmt: skip


def operation_of(method: str, url: str) -> str:
    """A bounded label for an engine call: `GET /containers/{id}/json`, never an id or a name."""
    parts = [part for part in url.split("?", 1)[0].split("/") if part]
    if parts and parts[0].startswith("v1."):
        parts = parts[1:]
    if len(parts) >= 2 and parts[0] in _RESOURCES and not (len(parts) == 2 and parts[1] in _COLLECTION):
        action = f"/{parts[-1]}" if len(parts) > 2 and parts[-1] in _ACTIONS else ""
        return f"{method} /{parts[0]}/{{id}}{action}"
    return f"{method} /{'/'.join(parts[:2])}"


def _clean_params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Engine query parameters: booleans as 1/0, dicts as JSON, None dropped."""
    if params is None:
        return None
    cleaned: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            cleaned[key] = "1" if value else "0"
        elif isinstance(value, dict | list):
            cleaned[key] = json.dumps(value)
        else:
            cleaned[key] = str(value)
    return cleaned
