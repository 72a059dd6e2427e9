"""The terminal client starts fast because it loads only the client: importing the command's entry
point must not load the server (SQLAlchemy, alembic, FastAPI, the services), nor the HTTP library
or rich before a command needs them. (Times: bench/cli_start.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_SIDE = ("sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn", "pydantic_settings", "acme")


def loaded_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_entry_point_loads_only_the_client() -> None:
    modules = loaded_after("import docker_manager.cli")
    assert not {m for m in modules if m.split(".")[0] in SERVER_SIDE}
    ours = {m for m in modules if m.startswith("docker_manager.")}
    assert not {
        m
        for m in ours
        if m.startswith(("docker_manager.services", "docker_manager.db", "docker_manager.api"))
    }
    assert "httpx2" not in modules and "rich" not in modules and "asyncio" not in modules


def test_help_lists_the_host_and_the_client_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "docker_manager", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("serve", "token", "audit", "login", "deploy", "certs", "apps", "ps"):
        assert f"  {command} " in done.stdout, command
