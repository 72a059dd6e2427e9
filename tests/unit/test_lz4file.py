"""Streaming lz4: round trips, multi-frame and legacy files, truncation, corruption, checksums."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from docker_manager.util.lz4file import ArchiveError, compress_to_file, decompress_file


async def chunks(data: bytes, size: int = 300_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(path: Path, **kwargs: object) -> bytes:
    return b"".join([c async for c in decompress_file(path, **kwargs)])  # type: ignore[arg-type]


@pytest.fixture
async def sample(tmp_path: Path) -> tuple[Path, bytes, str]:
    data = os.urandom(2_000_000) + b"\0" * 30_000_000  # compressible: one MiB in expands a lot
    result = await compress_to_file(chunks(data), tmp_path / "image.tar.lz4")
    assert not (tmp_path / "image.tar.lz4.part").exists()
    return result.path, data, result.sha256


async def test_round_trip_in_bounded_chunks_and_lz4_cli_agrees(sample: tuple[Path, bytes, str]) -> None:
    path, data, digest = sample
    pieces = [c async for c in decompress_file(path, expected_sha256=digest)]
    assert b"".join(pieces) == data
    assert max(len(p) for p in pieces) <= 4 << 20
    assert subprocess.run(["lz4", "-dc", str(path)], capture_output=True, check=True).stdout == data


async def test_truncated_corrupt_and_mismatching_files_raise(
    tmp_path: Path, sample: tuple[Path, bytes, str]
) -> None:
    path, _, _ = sample
    raw = path.read_bytes()
    (tmp_path / "short.lz4").write_bytes(raw[:-500])
    with pytest.raises(ArchiveError, match="truncated"):
        await read_all(tmp_path / "short.lz4")
    bad = bytearray(raw)
    bad[len(bad) // 2] ^= 0xFF
    (tmp_path / "bad.lz4").write_bytes(bytes(bad))
    with pytest.raises(ArchiveError):
        await read_all(tmp_path / "bad.lz4")
    with pytest.raises(ArchiveError, match="sha256"):
        await read_all(path, expected_sha256="0" * 64)
    (tmp_path / "plain.txt").write_bytes(b"not compressed")
    with pytest.raises(ArchiveError, match="not lz4"):
        await read_all(tmp_path / "plain.txt")
    with pytest.raises(ArchiveError, match="more than"):
        await read_all(path, max_bytes=1 << 20)


async def test_multi_frame_and_legacy_files(tmp_path: Path, sample: tuple[Path, bytes, str]) -> None:
    path, data, _ = sample
    (tmp_path / "twice.lz4").write_bytes(path.read_bytes() * 2)
    assert await read_all(tmp_path / "twice.lz4") == data + data
    plain = tmp_path / "plain.bin"
    plain.write_bytes(data)
    subprocess.run(["lz4", "-q", "-z", "-l", "-f", str(plain), str(tmp_path / "legacy.lz4")], check=True)
    assert await read_all(tmp_path / "legacy.lz4") == data


async def test_a_failed_compression_leaves_no_partial_file(tmp_path: Path) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise RuntimeError("engine went away")

    with pytest.raises(RuntimeError):
        await compress_to_file(broken(), tmp_path / "out.tar.lz4")
    assert list(tmp_path.iterdir()) == []
