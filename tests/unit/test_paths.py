"""util/paths.py: caller-supplied paths confined to the configured roots, symlinks resolved first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from docker_manager.errors import InvalidInput, PathNotAllowed
from docker_manager.util.paths import confine, plain_dir


def test_paths_inside_a_root_are_its_real_paths(tmp_path: Path) -> None:
    root, other = tmp_path / "contexts", tmp_path / "uploads"
    root.mkdir(), other.mkdir()
    (root / "shop").mkdir()
    assert confine("shop", [root, other], field="p") == (root / "shop").resolve()
    assert confine(str(other / "a.tar.lz4"), [root, other], field="p") == (other / "a.tar.lz4").resolve()
    assert confine(str(root), [root], field="p") == root.resolve()


@pytest.mark.parametrize(
    "raw",
    ["../etc", "shop/../../etc/passwd", "/etc/passwd", "/", "//etc", "shop/../../contexts-evil", "~"],
)
def test_every_way_out_is_refused(tmp_path: Path, raw: str) -> None:
    root = tmp_path / "contexts"
    (root / "shop").mkdir(parents=True)
    (tmp_path / "contexts-evil").mkdir()  # a sibling whose name starts like the root's
    if raw == "~":
        (root / "~").symlink_to(Path.home())
    with pytest.raises(PathNotAllowed) as refused:
        confine(raw, [root], field="context_path")
    assert refused.value.field == "context_path"


def test_a_symlink_out_of_the_root_is_refused_wherever_it_sits(tmp_path: Path) -> None:
    root = tmp_path / "contexts"
    (root / "deep" / "er").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "deep" / "er" / "link").symlink_to(outside)
    (root / "loop").symlink_to(root / "loop")
    for raw in ("deep/er/link", "deep/er/link/x", str(root / "deep/er/link")):
        with pytest.raises(PathNotAllowed):
            confine(raw, [root], field="p")
    with pytest.raises((PathNotAllowed, RuntimeError, OSError)):
        confine("loop", [root], field="p")


def test_empty_and_nul_paths_are_bad_input(tmp_path: Path) -> None:
    for raw in ("", "shop\x00/../../etc"):
        with pytest.raises(InvalidInput):
            confine(raw, [tmp_path], field="p")


def test_a_task_folder_is_never_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "build_1").symlink_to(target)
    for create in (True, False):
        with pytest.raises(PathNotAllowed):
            plain_dir(tmp_path / "build_1", create=create)
    made = plain_dir(tmp_path / "build_2", create=True)
    assert made.is_dir() and not made.is_symlink() and os.stat(made).st_mode & 0o777 == 0o700
    assert plain_dir(tmp_path / "missing", create=False) == tmp_path / "missing"
