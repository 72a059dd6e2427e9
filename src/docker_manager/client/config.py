"""Where the client finds its service: named contexts (URL and token) in a 0600 TOML file."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from docker_manager.util.files import write_atomic

CONTEXT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ConfigError(Exception):
    """The client is not configured (no context, unknown context): a usage error."""


@dataclass(frozen=True)
class Context:
    name: str
    url: str
    token: str


@dataclass
class ClientConfig:
    current: str | None = None
    contexts: dict[str, Context] = field(default_factory=dict)


def config_path() -> Path:
    explicit = os.environ.get("DM_CLIENT_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "docker-manager" / "config.toml"


def load(path: Path | None = None) -> ClientConfig:
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ClientConfig()
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    contexts = {
        name: Context(name, str(values.get("url", "")), str(values.get("token", "")))
        for name, values in (data.get("contexts") or {}).items()
        if isinstance(values, dict)
    }
    return ClientConfig(current=data.get("current"), contexts=contexts)


def _quoted(value: str) -> str:
    """A TOML basic string: backslash, quote and every control character escaped."""
    escaped = "".join(
        f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ch in '"\\' or 0x7F <= ord(ch) <= 0x9F else ch
        for ch in value
    )
    return f'"{escaped}"'


def save(config: ClientConfig, path: Path | None = None) -> Path:
    """Write the file atomically, mode 0600 (it holds tokens), its folder 0700."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = [f"current = {_quoted(config.current)}" if config.current else "", ""]
    for name, context in sorted(config.contexts.items()):
        lines += [
            f"[contexts.{_quoted(name)}]",
            f"url = {_quoted(context.url)}",
            f"token = {_quoted(context.token)}",
            "",
        ]
    write_atomic(path, "\n".join(lines).lstrip("\n").encode())  # mkstemp: created 0600
    os.chmod(path, 0o600)
    return path


def resolve(name: str | None) -> Context:
    """The context to use: DM_URL and DM_TOKEN (scripts), else `--context`/DM_CONTEXT, else the current."""
    url, token = os.environ.get("DM_URL"), os.environ.get("DM_TOKEN")
    if url and token:
        return Context("env", url.rstrip("/"), token)
    config = load()
    chosen = name or os.environ.get("DM_CONTEXT") or config.current
    if not chosen:
        raise ConfigError("not logged in: run `docker-manager login URL` (or set DM_URL and DM_TOKEN)")
    context = config.contexts.get(chosen)
    if context is None:
        raise ConfigError(f"no context named {chosen!r}: see `docker-manager contexts`")
    return context
