"""The task status poll answered below FastAPI's routing, for the common case.

Control planes poll `GET /tasks/status/{id}` hard. FastAPI spends most of such a request in route
matching (a regex per route, ~100 routes), the dependency graph and its request objects, not in
the work itself (`bench/status.py --profile`). This innermost middleware answers a valid id for a
token with the read scope straight from the task service, with the very bytes the route would
send; every other case (a bad id, no scope, an unknown task, a host command for a non-admin)
goes on to the route, so errors keep their one mapping (api/errors.py). It runs inside the
guards: Host check, authentication, request id, metrics and audit all still see the request.
"""

from __future__ import annotations

import contextlib
import re

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from docker_manager.auth import Principal
from docker_manager.auth import Scope as TokenScope

STATUS_PREFIX = "/tasks/status/"
STATUS_TEMPLATE = STATUS_PREFIX + "{task_id}"
_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the route's own TaskIdPath pattern
_JSON_HEADERS = (b"content-type", b"application/json")


class TaskStatusFastPath:
    def __init__(self, app: ASGIApp, route: BaseRoute) -> None:
        self.app = app
        self.route = route  # the documented route: what metrics and audit name the request by

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith(STATUS_PREFIX):
            task_id = scope["path"][len(STATUS_PREFIX) :]
            principal: Principal | None = scope.get("state", {}).get("principal")
            if principal is not None and principal.has(TokenScope.READ) and _TASK_ID.fullmatch(task_id):
                body = None
                # Any failure (not found, no access, the database down...) is the route's to answer,
                # with the app's one error mapping.
                with contextlib.suppress(Exception):
                    body = await scope["app"].state.runtime.tasks.status_json(task_id, principal)
                if body is not None:
                    scope["route"] = self.route
                    scope["path_params"] = {"task_id": task_id}
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
