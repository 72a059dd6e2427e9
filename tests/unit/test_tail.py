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


def _reference(path: Path, n: int, max_line: int, max_bytes: int) -> list[str]:
    """The earlier tail (chunks read backwards, kept, then split): what the span must give."""
    data = path.read_bytes()
    budget = min(n * (max_line + 1) + 65536, max(max_bytes, 65536))
    position, newlines, chunks = len(data), 0, []
    while position > 0 and budget > 0:
        size = min(65536, position)
        position -= size
        chunk = data[position : position + size]
        chunks.append(chunk)
        budget -= size
        newlines += chunk.count(b"\n")
        if newlines > n:
            break
    lines = b"".join(reversed(chunks)).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if position > 0 and newlines > n:
        lines = lines[1:]
    return [line[-max_line:].decode("utf-8", "replace") for line in lines[-n:]]


def test_span_and_batches_give_the_lines_a_whole_read_gives(tmp_path: Path) -> None:
    import random

    from docker_manager.util.tail import read_span, tail_span

    rng = random.Random(7)
    path = tmp_path / "mixed.log"
    for case in range(60):
        lengths = [rng.choice([0, 1, 5, 80, 3000, 70_000]) for _ in range(rng.randint(0, 300))]
        data = b"\n".join(bytes([97 + i % 26]) * length for i, length in enumerate(lengths))
        if rng.random() < 0.5:
            data += b"\n"
        path.write_bytes(data)
        n = rng.choice([1, 2, 10, 200, 10_000])
        max_bytes = rng.choice([1 << 16, 1 << 20, 1 << 30])
        span = tail_span(path, n, max_line=4096, max_bytes=max_bytes)
        assert span is not None and span.size == len(data)
        batches = list(read_span(span, batch_bytes=10_000))
        expected = _reference(path, n, 4096, max_bytes)
        assert [line for batch in batches for line in batch] == expected, case
        assert all(sum(len(line) for line in batch) < 10_000 + 70_000 for batch in batches)
