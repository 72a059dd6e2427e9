"""Cloning repositories safely: checked URLs, no hooks, no submodules, no prompts, time and size caps.

Refused before git runs: transport-helper URLs (`ext::sh -c ...`, `fd::3`), anything starting with
`-` (`--upload-pack=...`, `-oProxyCommand=...`), hosts starting with `-` (`ssh://-oProxyCommand`),
control characters, schemes not in `DM_GIT_ALLOWED_SCHEMES` (https by default), and local paths
outside `DM_GIT_LOCAL_ROOTS`. Then git itself runs with only that protocol allowed, `--` before the
URL, hooks pointed at /dev/null, no system or global config, and `GIT_TERMINAL_PROMPT=0`.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import re
import shutil
import stat
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from docker_manager.errors import CloneFailed, InvalidInput
from docker_manager.util.paths import confine
from docker_manager.util.proc import ProcessRunner

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")


def check_repo_url(url: str, *, schemes: Sequence[str], local_roots: Sequence[Path]) -> tuple[str, str]:
    """The URL git will be given and its scheme, or InvalidInput. Local paths become file:// URLs."""
    if not url or len(url) > 2048 or _CONTROL.search(url):
        raise InvalidInput(
            "repo_url is empty, too long, or holds spaces or control characters", field="repo_url"
        )
    if url.startswith("-") or _HELPER.match(url):
        raise InvalidInput(
            "repo_url may not be an option or a transport helper (ext::, fd::)", field="repo_url"
        )
    if url.startswith("/"):
        return _local(url, local_roots), "file"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme or "://" not in url:
        raise InvalidInput("repo_url must be a URL such as https://host/owner/repo", field="repo_url")
    if scheme not in schemes and not (scheme == "file" and local_roots):
        raise InvalidInput(
            f"the {scheme!r} scheme is not allowed (allowed: {', '.join(schemes)})", field="repo_url"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput("a file:// URL names no host", field="repo_url")
        # git percent-decodes file URLs: decode first, then confine what git will really open.
        return _local(unquote(parts.path), local_roots), "file"
    host = parts.hostname or ""
    if not host or host.startswith("-") or (parts.username or "").startswith("-"):
        raise InvalidInput("repo_url has no host, or a host that looks like an option", field="repo_url")
    return url, scheme


def _local(path: str, local_roots: Sequence[Path]) -> str:
    """A local repository path confined to `local_roots`, as the file:// URL git is given."""
    if not local_roots:
        raise InvalidInput("local repositories are not allowed on this host", field="repo_url")
    if "%" in path or _CONTROL.search(path):
        # Still encoded after one decoding (%252e), or a decoded control character: refuse
        # rather than guess how many more times something decodes it.
        raise InvalidInput("repo_url holds encoded or control characters", field="repo_url")
    confined = confine(path, list(local_roots), field="repo_url")
    return urlunsplit(("file", "", quote(str(confined)), "", ""))


def redact_credentials(text: str, secrets: Sequence[str] = ()) -> str:
    """`text` with the credentials of any URL in it (`user:password@`, a token as the user name,
    even with `@` in it) and the given secrets replaced by ***."""
    text = re.sub(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s]*@", r"\1***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def shown_url(url: str) -> str:
    """A URL as it may be shown: no user information, no query, no fragment (tokens live there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return shown if parts.scheme else redact_credentials(url)


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that may hold a secret, to be hidden wherever they show up."""
    parts = urlsplit(url)
    return [s for s in (parts.username, parts.password, parts.query, parts.fragment) if s]


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _git_env(home: Path, scheme: str) -> dict[str, str]:
    """No prompts, no system or global config, one protocol: git as a tool, not a shell."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_ALLOW_PROTOCOL": scheme,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }


def _credentials_apart(url: str, env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """An http(s) URL's user and password go to git as a header through its environment, not in
    its arguments (which any local user can read in /proc) nor in the clone's .git/config."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not (parts.username or parts.password):
        return url, env
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    header = "Authorization: Basic " + base64.b64encode(pair.encode()).decode()
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, {
        **env,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": header,
    }


def _clone_argv(url: str, scheme: str, dest: Path, ref: str | None = None) -> list[str]:
    # A ref is validated by its schema (no leading `-`); `--branch=` keeps it one argument anyway.
    branch = [f"--branch={ref}"] if ref else []
    return [
        shutil.which("git") or "git",
        "-c", "protocol.allow=never",
        "-c", f"protocol.{scheme}.allow=always",
        "-c", "core.hooksPath=/dev/null",
        "-c", "submodule.recurse=false",
        "clone", "--depth", "1", "--single-branch", "--no-recurse-submodules", "--quiet", *branch,
        "--", url, str(dest),
    ]  # fmt: skip


async def clone(
    url: str,
    scheme: str,
    dest: Path,
    *,
    timeout: float,
    max_bytes: int,
    on_line: Callable[[str, str], Awaitable[None]],
    ref: str | None = None,
) -> str:
    """`git clone --depth 1` (of `ref`, a branch or tag, when given) into `dest`; the commit cloned."""
    home = dest.parent / ".git-home"
    home.mkdir(parents=True, exist_ok=True)
    env = _git_env(home, scheme)
    url, env = _credentials_apart(url, env)
    runner = ProcessRunner(max_line=4096, max_output=1 << 20)

    async def forward(stream: str, text: str, _cut: bool) -> None:
        await on_line(stream, text)

    async def watch_size() -> None:
        while True:
            await asyncio.sleep(1.0)
            if await asyncio.to_thread(_tree_size, dest) > max_bytes:
                await runner.stop()
                return

    watchdog = asyncio.create_task(watch_size())
    try:
        result = await runner.run(
            _clone_argv(url, scheme, dest, ref), cwd=dest.parent, env=env, on_line=forward, timeout=timeout
        )
    finally:
        watchdog.cancel()
    if result.signal == "timeout" or (result.signal or "").endswith("(timeout)"):
        raise CloneFailed(f"the clone took longer than {timeout:.0f} s")
    too_big = await asyncio.to_thread(_tree_size, dest) > max_bytes
    if too_big:
        raise CloneFailed(f"the repository is larger than {max_bytes} bytes")
    if not result.ok:
        raise CloneFailed(f"git clone failed (exit code {result.exit_code}, signal {result.signal})")
    return await _head(dest, env)


async def _head(dest: Path, env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        "git",
        "-C",
        str(dest),
        "rev-parse",
        "HEAD",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    return out.decode().strip()


MAX_DOCKERFILE_BYTES = 1 << 20


def read_repo_dockerfile(path: Path) -> str | None:
    """The repository's own Dockerfile, or None when it has none. A symlink (which could point
    anywhere on the host) or an oversized file is refused, never read. Blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidInput("the repository's Dockerfile is a symbolic link", field="repo_url") from exc
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise InvalidInput("the repository's Dockerfile is not a regular file", field="repo_url")
        data = handle.read(MAX_DOCKERFILE_BYTES + 1)
    if len(data) > MAX_DOCKERFILE_BYTES:
        raise InvalidInput("the repository's Dockerfile is larger than 1 MiB", field="repo_url")
    return data.decode("utf-8", "replace")
