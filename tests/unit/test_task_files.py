"""Per-task files: concurrent summary merges lose nothing; JSON is replaced atomically."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from docker_manager.runner.files import LogBatch, TaskFiles, deep_merge
from docker_manager.services.builds import artefact_name, parse_dockerfile


async def test_concurrent_merges_keep_every_writers_fields(tmp_path: Path) -> None:
    files = await TaskFiles.open(tmp_path / "task")
    await asyncio.gather(*(files.merge_info({f"field_{i}": i, "nested": {f"k{i}": i}}) for i in range(40)))
    info = json.loads((tmp_path / "task" / "build.info.json").read_text())
    assert all(info[f"field_{i}"] == i for i in range(40))
    assert info["nested"] == {f"k{i}": i for i in range(40)}
    assert not [p for p in (tmp_path / "task").iterdir() if p.name.endswith(".tmp")]


async def test_log_batches_append_to_the_contract_files(tmp_path: Path) -> None:
    files = await TaskFiles.open(tmp_path / "task")
    await files.append(
        LogBatch(raw=["a\n", "b\n"], jsonl=[{"event": "x", "n": 1}], events=["step"], errors=["bad"])
    )
    folder = tmp_path / "task"
    assert (folder / "build.log").read_text() == "a\nb\n"
    record = json.loads((folder / "build.jsonl").read_text())
    assert record["event"] == "x" and record["level"] == "info" and record["ts"].endswith("Z")
    assert (folder / "events.log").read_text().endswith("] step\n")
    assert (folder / "error.log").read_text().endswith("] bad\n")


def test_deep_merge() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"c": 3}, "d": {"x": 1}}) == {
        "a": {"b": 1, "c": 3},
        "d": {"x": 1},
    }


def test_dockerfile_parsing_joins_continuations() -> None:
    text = '# comment\nFROM bb\n\nRUN echo a && \\\n    # inside\n    echo b\nCMD ["sh"]\n'
    assert parse_dockerfile(text) == [
        {"line": 2, "op": "FROM", "instruction": "FROM bb", "args": "bb"},
        {"line": 4, "op": "RUN", "instruction": "RUN echo a && echo b", "args": "echo a && echo b"},
        {"line": 7, "op": "CMD", "instruction": 'CMD ["sh"]', "args": '["sh"]'},
    ]
    escaped = "# escape=`\nFROM bb\nRUN echo a `\n  echo b\n"
    assert parse_dockerfile(escaped)[1]["instruction"] == "RUN echo a echo b"


def test_artefact_name() -> None:
    assert artefact_name("127.0.0.1:5000/team/site:v1") == "127.0.0.1_5000_team_site_v1.tar.lz4"
    assert artefact_name("html-site1:latest") == "html-site1_latest.tar.lz4"


def test_labels_are_one_instruction_at_the_end() -> None:
    from docker_manager.services.builds import with_labels

    text = with_labels("FROM bb\nRUN true", {"b.label": "2", "a.label": "1"})
    assert text == 'FROM bb\nRUN true\n\nLABEL "a.label"="1" "b.label"="2"\n'
    assert parse_dockerfile(text)[-1]["op"] == "LABEL"
