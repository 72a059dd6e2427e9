"""Reading the end of a file without reading the file."""

from __future__ import annotations

import os
from pathlib import Path

from docker_manager.util.tail import tail_lines


def test_tail_of_small_and_large_files(tmp_path: Path) -> None:
    path = tmp_path / "build.log"
    with path.open("w") as handle:
        for i in range(200_000):
            handle.write(f"line {i}\n")
    assert tail_lines(path, 3) == ["line 199997", "line 199998", "line 199999"]
    assert tail_lines(path, 1) == ["line 199999"]
    small = tmp_path / "small.log"
    small.write_text("a\nb\n")
    assert tail_lines(small, 10) == ["a", "b"]
    small.write_text("no newline at the end")
    assert tail_lines(small, 10) == ["no newline at the end"]
    assert tail_lines(tmp_path / "missing.log", 5) is None
    assert tail_lines(path, 0) == []


def test_overlong_lines_keep_their_end(tmp_path: Path) -> None:
    path = tmp_path / "long.log"
    path.write_text("first\n" + "x" * 300_000 + "END\nlast\n")
    lines = tail_lines(path, 2, max_line=1000)
    assert lines is not None
    assert lines[-1] == "last"
    assert lines[0].endswith("END") and len(lines[0]) == 1000


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("password\n")
    os.symlink(secret, tmp_path / "build.log")
    assert tail_lines(tmp_path / "build.log", 5) is None


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "bin.log"
    path.write_bytes(b"ok\n\xff\xfe bad\n")
    assert tail_lines(path, 2) == ["ok", "\ufffd\ufffd bad"]


def test_reads_are_capped_in_bytes_whatever_the_line_count(tmp_path: Path) -> None:
    path = tmp_path / "wide.log"
    with path.open("w") as handle:
        for i in range(100):
            handle.write(f"{i:03d}" + "y" * 60_000 + "\n")  # 6 MB of 60 KB lines
    lines = tail_lines(path, 10_000, max_bytes=1 << 20)
    assert lines is not None
    assert 15 <= len(lines) <= 18  # about 1 MiB of them, the last ones, not all 100
    assert lines[-1].startswith("099") and all(len(line) <= 64 * 1024 for line in lines)
