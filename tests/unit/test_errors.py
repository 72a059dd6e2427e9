"""The one error tree: every `code` an answer can carry is a class in it, listed in errors.py's
map, and nowhere else is an error body written by hand."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import docker_manager
from docker_manager import errors
from docker_manager.api.errors import HTTP_ERRORS
from docker_manager.errors import DockerManagerError

PACKAGE = Path(docker_manager.__file__).resolve().parent


def every_error_class() -> list[type[DockerManagerError]]:
    for module in pkgutil.walk_packages([str(PACKAGE)], "docker_manager."):
        if module.name.endswith("__main__") or ".migrations" in module.name:
            continue  # (a program, and alembic's scripts)
        importlib.import_module(module.name)  # errors defined anywhere count
    found, todo = [], [DockerManagerError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_has_one_code_a_status_and_its_place_in_the_map() -> None:
    classes = every_error_class()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)
    for cls in classes:
        assert cls.__module__ == "docker_manager.errors", f"{cls.__name__}: errors live in errors.py"
        assert re.fullmatch(r"[a-z][a-z_]+", cls.code) and 400 <= cls.status_code <= 599, cls
        assert cls.__doc__, f"{cls.__name__} says when it is raised"
        row = re.search(rf"{cls.__name__}\s+(\d{{3}}) (\w+)", errors.__doc__ or "")
        assert row is not None and row.groups() == (str(cls.status_code), cls.code), cls.__name__


def test_starlettes_own_answers_are_classes_of_the_tree() -> None:
    for status, cls in HTTP_ERRORS.items():
        assert issubclass(cls, DockerManagerError) and cls.status_code == status


def test_no_error_body_is_written_by_hand() -> None:
    written = re.compile(r"""["']code["']\s*:\s*f?["']""")
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        assert not written.search(path.read_text()), (
            f"{path.relative_to(PACKAGE)} writes an error code by hand"
        )
