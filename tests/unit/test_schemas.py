"""Validation of the values that reach Docker: sizes, ports, commands, names, images."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from docker_manager.schemas.common import parse_bytes
from docker_manager.schemas.containers import ExecRequest, RunExtendedRequest, RunRequest
from docker_manager.schemas.images import TagRequest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512m", 512 << 20),
        ("1g", 1 << 30),
        ("1G", 1 << 30),
        ("10240k", 10 << 20),
        ("7000000", 7_000_000),
        ("1.5g", int(1.5 * (1 << 30))),
    ],
)
def test_memory_strings(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected
    assert RunRequest(image="bb", memory=text).memory == expected


@pytest.mark.parametrize("text", ["512mb", "-1", "", "1e100g", "abc", "1k", "12 parsecs"])
def test_bad_memory_strings_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        RunRequest(image="bb", memory=text)


def test_ports_are_normalised() -> None:
    body = RunRequest(image="bb", ports={"80": 8080, "53/udp": None})
    assert body.ports == {"80/tcp": 8080, "53/udp": None}


@pytest.mark.parametrize(
    "ports", [{"80/tcp": 0}, {"80/tcp": 65536}, {"http": 80}, {"0/tcp": 80}, {"80/icmp": 80}, {"80/tcp": -1}]
)
def test_bad_ports_are_refused(ports: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        RunRequest(image="bb", ports=ports)


def test_command_string_is_split_like_a_shell_and_list_kept() -> None:
    assert RunRequest(image="bb", command="sh -c 'echo a; echo b'").command == ["sh", "-c", "echo a; echo b"]
    assert ExecRequest(id_or_name="web", cmd=["ls", "$(id)"]).cmd == ["ls", "$(id)"]


@pytest.mark.parametrize("cmd", ["", "echo 'unbalanced", ["a\x00b"], []])
def test_bad_commands_are_refused(cmd: object) -> None:
    with pytest.raises(ValidationError):
        ExecRequest(id_or_name="web", cmd=cmd)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name", ["--privileged", "a;rm -rf /", "-x", "web/../x", "a" * 200, "", "../x", "a b"]
)
def test_hostile_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        RunRequest(image="bb", name=name)


@pytest.mark.parametrize(
    "app_id", ["../nginx", "-x", ".hidden", "a" * 64, "x\x00", "web\n", "a/b", "", "a b", "a;b"]
)
def test_hostile_app_ids_are_refused(app_id: str) -> None:
    with pytest.raises(ValidationError):
        RunRequest(image="bb", app_id=app_id, task_id="t1")


@pytest.mark.parametrize("app_id", ["html_site1", "Web", "a.conf", "a" * 63, "9lives"])
def test_app_ids_the_original_took_are_accepted(app_id: str) -> None:
    assert RunRequest(image="bb", app_id=app_id, task_id="t1").app_id == app_id


@pytest.mark.parametrize("task_id", ["../x", "a/b", "..", "x\x00", "a" * 65, "a b"])
def test_hostile_task_ids_are_refused(task_id: str) -> None:
    with pytest.raises(ValidationError):
        RunRequest(image="bb", app_id="web", task_id=task_id)


@pytest.mark.parametrize(
    "image",
    [
        "bb",
        "bb:latest",
        "127.0.0.1:5000/team/site:v1",
        "library/nginx:1.25-alpine",
        "sha256:" + "a" * 64,
        "a" * 12,
        "repo@sha256:" + "b" * 64,
    ],
)
def test_image_references(image: str) -> None:
    assert RunRequest(image=image).image == image


@pytest.mark.parametrize("image", ["UPPER", "a b", "x:y:z", "../x", "-bb", "bb;rm", "a" * 300, ""])
def test_bad_image_references(image: str) -> None:
    with pytest.raises(ValidationError):
        RunRequest(image=image)


def test_env_keys_and_values_are_checked() -> None:
    with pytest.raises(ValidationError):
        RunRequest(image="bb", env={"A=B": "x"})
    with pytest.raises(ValidationError):
        RunRequest(image="bb", env={"A": "x\x00y"})
    assert RunRequest(image="bb", env={"A_1": "x=y"}).env == {"A_1": "x=y"}


def test_unknown_fields_nan_and_infinity_are_refused() -> None:
    with pytest.raises(ValidationError):
        RunRequest(image="bb", privileged=True)  # type: ignore[call-arg]
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValidationError):
            RunRequest(image="bb", cpu=value)


def test_run_extended_volume_and_tag_grammar() -> None:
    body = RunExtendedRequest(image="bb", volumes={"data": {"bind": "/data", "mode": "ro"}})  # type: ignore[dict-item]
    assert body.volumes["data"].bind == "/data"
    with pytest.raises(ValidationError):
        RunExtendedRequest(image="bb", volumes={"data": {"bind": "relative"}})  # type: ignore[dict-item]
    with pytest.raises(ValidationError):
        TagRequest(source="bb", repo="Bad Repo", tag="x")


@pytest.mark.parametrize("value", [{}, [], None, True, 1.5e300])
def test_wrong_json_types_are_validation_errors_not_crashes(value: object) -> None:
    # Found by schemathesis: before-validators saw raw JSON and raised TypeError (a 500).
    if value is not None:  # memory is optional: null means no limit
        with pytest.raises(ValidationError):
            RunRequest(image="bb", memory=value)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            ExecRequest(id_or_name="web", cmd=value)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ExecRequest(id_or_name="web", cmd=None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ExecRequest(id_or_name="web", cmd=["ls", 1])  # type: ignore[list-item]


def test_repository_names_are_at_most_255_characters() -> None:
    with pytest.raises(ValidationError):
        TagRequest(source="bb", repo="a/" * 130 + "b", tag="x")


@pytest.mark.parametrize(
    ("app_id", "image"),
    [("html_site1", "html_site1"), ("Web", "web"), ("a..b", "a-b"), ("shop.v2", "shop.v2"), ("x_-y", "x-y")],
)
def test_an_app_id_becomes_a_valid_image_name(app_id: str, image: str) -> None:
    from docker_manager.services.builds import image_name_for

    assert image_name_for(app_id) == image
    assert RunRequest(image=f"{image_name_for(app_id)}:latest").image == f"{image}:latest"


@pytest.mark.parametrize(
    ("repo", "allowed", "applies"),
    [
        ("team/site", ["docker.io"], True),
        ("registry.attacker.example/x/y", ["docker.io"], False),
        ("127.0.0.1:5000/team/site", ["127.0.0.1:5000/team"], True),
        ("127.0.0.1:5000/teamless/site", ["127.0.0.1:5000/team"], False),
        ("127.0.0.1:5000.evil.example/x/y", ["127.0.0.1:5000"], False),
        ("localhost/x", [], False),
    ],
)
def test_registry_credentials_apply_only_where_listed(repo: str, allowed: list[str], applies: bool) -> None:
    from docker_manager.services.pipelines.service import credentials_apply

    assert credentials_apply(repo, allowed) is applies


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (RunRequest, "image", "busybox\n"),
        (RunRequest, "name", "web\n"),
        (RunRequest, "app_id", "web\n"),
        (RunRequest, "task_id", "t1\n"),
        (RunRequest, "env", {"FOO\n": "x"}),
        (RunRequest, "ports", {"80\n": 8080}),
        (RunRequest, "cpuset", "0\n"),
    ],
)
def test_a_trailing_newline_passes_no_validator(model: Any, field: str, value: Any) -> None:
    base = {"image": "bb"}
    with pytest.raises(ValidationError):
        model(**{**base, field: value})
