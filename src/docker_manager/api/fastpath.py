"""The task status poll answered below FastAPI's routing, for the common case.

Control planes poll `GET /tasks/status/{id}` hard. FastAPI spends most of such a request in route
matching (a regex per route, ~100 routes), the dependency graph and its request objects, not in
the work itself (`bench/status.py --profile`). This innermost middleware answers a valid id for a
token holding the route's scope straight from the task service, with the very bytes the route
would send; every other case (a bad id, no scope, an unknown task, a host command for a non-admin)
goes on to the route, so errors keep their one mapping (api/errors.py). It runs inside the
guards: Host check, authentication, request id, metrics and audit all still see the request.

What it matches and who it serves are read from the route it shadows (its path, its parameter's
pattern, its `RequireScope`), so a change to the route reaches it; `tests/app/test_tasks.py`
checks both answer alike.
"""

from __future__ import annotations

import contextlib
import re

from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from docker_manager.api.deps import RequireScope
from docker_manager.auth import Principal

_JSON_HEADERS = (b"content-type", b"application/json")


class StatusShape:
    """What the shadowed route matches and requires, read from the route itself."""

    def __init__(self, route: APIRoute) -> None:
        params = route.dependant.path_params
        if route.methods != {"GET"} or len(params) != 1 or not route.path_format.endswith("}"):
            raise ValueError(f"{route.path} is not a GET route with one trailing path parameter")
        self.prefix = route.path_format[: route.path_format.index("{")]
        self.param = params[0].name
        patterns = [getattr(m, "pattern", None) for m in params[0].field_info.metadata]
        pattern = next((p for p in patterns if p), None)
        if pattern is None:
            raise ValueError(f"{route.path}: its parameter has no pattern to check ids against")
        self.pattern = re.compile(pattern)
        guards = [d.call for d in route.dependant.dependencies if isinstance(d.call, RequireScope)]
        if len(guards) != 1:
            raise ValueError(f"{route.path} needs exactly one RequireScope")
        self.guard = guards[0]

    def value_of(self, path: str) -> str | None:
        """The parameter's value when `path` is this route's and the value passes its pattern."""
        if not path.startswith(self.prefix):
            return None
        value = path[len(self.prefix) :]
        return value if self.pattern.fullmatch(value) else None

    def allows(self, principal: Principal) -> bool:
        if principal.apps is not None and not self.guard.apps:
            return False  # the route's own answer says why
        return principal.has(self.guard.scope) or any(principal.has(s) for s in self.guard.also)


class TaskStatusFastPath:
    def __init__(self, app: ASGIApp, route: APIRoute) -> None:
        self.app = app
        self.route = route  # the documented route: what metrics and audit name the request by
        self.shape = StatusShape(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            task_id = self.shape.value_of(scope["path"])
            principal: Principal | None = scope.get("state", {}).get("principal")
            if task_id is not None and principal is not None and self.shape.allows(principal):
                body = None
                # Any failure (not found, no access, the database down...) is the route's to answer,
                # with the app's one error mapping.
                with contextlib.suppress(Exception):
                    body = await scope["app"].state.runtime.tasks.status_json(task_id, principal)
                if body is not None:
                    scope["route"] = self.route
                    scope["path_params"] = {self.shape.param: task_id}
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": [_JSON_HEADERS, (b"content-length", str(len(body)).encode())],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)
