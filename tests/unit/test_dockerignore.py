"""`.dockerignore` rules as Docker applies them."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path

from docker_manager.adapters.docker.build_context import BuildContext, DockerIgnore


def rules(text: str) -> DockerIgnore:
    return DockerIgnore.parse(text, always_include=("Dockerfile", ".dockerignore"))


def test_plain_names_exclude_files_and_everything_below_directories() -> None:
    ignore = rules("secret.txt\nnode_modules\n")
    assert ignore.excluded("secret.txt")
    assert ignore.excluded("node_modules")
    assert ignore.excluded("node_modules/a/b.js")
    assert not ignore.excluded("src/secret.txt")  # patterns are anchored at the context root


def test_wildcards() -> None:
    ignore = rules("*.log\n**/*.tmp\ndocs/?.md\n")
    assert ignore.excluded("build.log")
    assert not ignore.excluded("sub/build.log")
    assert ignore.excluded("a/b/c.tmp")
    assert ignore.excluded("c.tmp")
    assert ignore.excluded("docs/a.md")
    assert not ignore.excluded("docs/ab.md")


def test_last_match_wins_and_exceptions_reinclude() -> None:
    ignore = rules("*.md\n!README.md\n")
    assert ignore.excluded("CHANGES.md")
    assert not ignore.excluded("README.md")
    assert ignore.has_exclusions


def test_comments_blank_lines_and_leading_slash() -> None:
    ignore = rules("# comment\n\n/build\n  ./dist  \n")
    assert ignore.excluded("build/x")
    assert ignore.excluded("dist")
    assert not ignore.excluded("# comment")


def test_dockerfile_and_dockerignore_are_always_sent() -> None:
    ignore = rules("*\n")
    assert ignore.excluded("app.py")
    assert not ignore.excluded("Dockerfile")
    assert not ignore.excluded(".dockerignore")


def test_unbalanced_bracket_matches_nothing() -> None:
    assert not rules("[abc\n").excluded("[abc")


def test_forced_exclusions_win_over_the_contexts_own_rules(tmp_path: Path) -> None:
    """A cloned repository's `.dockerignore` with `!.git` cannot send `.git` (its credentials)."""
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("url = https://user:secret@example.com/r\n")
    (tmp_path / ".dockerignore").write_text("!.git\n!.git/**\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in BuildContext(root=tmp_path, exclude=(".git",)).stream()])

    with tarfile.open(fileobj=io.BytesIO(asyncio.run(collect()))) as tar:
        names = tar.getnames()
    assert "Dockerfile" in names and not [n for n in names if n.startswith(".git/") or n == ".git"]
