"""The dashboard's pure parts: SSE fragments, sealed page messages, CSRF comparison, the upload list."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from cryptography.fernet import Fernet

from docker_manager.config import Roots
from docker_manager.services.deploys.localrun import list_uploads
from docker_manager.services.tasks.service import EventView
from docker_manager.ui.live import _fragment
from docker_manager.ui.session import Session, SessionCodec


def test_an_event_is_one_sse_data_line_whatever_its_text() -> None:
    hostile = "failed\n\nevent: end\ndata: <script>alert(1)</script>\r"
    for view in (
        EventView(3, "step", {"stage": "building", "status": "error", "message": hostile}),
        EventView(4, "log", {"lines": [{"stream": "stderr\n", "text": hostile}]}),
    ):
        _, html = _fragment(view)
        assert "\n" not in html and "\r" not in html
        assert "<script>" not in html and "&lt;script&gt;" in html


def test_page_messages_are_sealed_for_one_session_and_page() -> None:
    codec = SessionCodec(Fernet.generate_key(), cast(Any, None), max_age=60)
    mine = {"session_id": "s1", "path": "/ui/containers"}
    sealed = codec.seal_message("error", "insufficient_scope: this needs operate", **mine)
    assert codec.open_message(sealed, **mine) == ("error", "insufficient_scope: this needs operate")
    # A message another session made (a read session's refusal echoing what it typed) is not shown
    # to the admin's session, nor on another page.
    assert codec.open_message(sealed, session_id="admin", path="/ui/containers") is None
    assert codec.open_message(sealed, session_id="s1", path="/ui/sites") is None
    # Words from a link made elsewhere are not shown.
    assert codec.open_message("Your token was rotated: paste it at https://evil.example", **mine) is None
    other = SessionCodec(Fernet.generate_key(), cast(Any, None), max_age=60)
    assert codec.open_message(other.seal_message("notice", "hi", **mine), **mine) is None


def test_csrf_comparison_takes_any_text() -> None:
    session = Session("s", cast(Any, None), "abc")
    assert session.csrf_ok("abc")
    assert not session.csrf_ok("ябц") and not session.csrf_ok(None) and not session.csrf_ok("")


def test_uploads_listed_from_task_folders_and_the_root_only(tmp_path: Path) -> None:
    roots = cast(Roots, SimpleNamespace(upload_path=tmp_path))
    (tmp_path / "build_1").mkdir()
    (tmp_path / "build_1" / "web_v1.tar.lz4").write_bytes(b"x")
    (tmp_path / "loose.tar.lz4").write_bytes(b"xy")
    (tmp_path / "not a task").mkdir()  # not a task id: another task's folder could be named so
    (tmp_path / "not a task" / "a.tar.lz4").write_bytes(b"x")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.tar.lz4").write_bytes(b"x")
    os.symlink(outside, tmp_path / "linked")
    os.symlink(outside / "secret.tar.lz4", tmp_path / "link.tar.lz4")
    found = {u.path: u.task_id for u in list_uploads(roots)}
    assert found == {"build_1/web_v1.tar.lz4": "build_1", "loose.tar.lz4": None}
