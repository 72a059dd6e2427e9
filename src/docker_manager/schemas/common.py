"""Shared field types: every name, id and size that reaches Docker is checked here first."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue

from docker_manager.util.argv import split_words


class StrictModel(BaseModel):
    """Base of every request body: unknown fields, NaN and Infinity are refused.

    `null` for a field that has a default means "not given", as it did in the original: the
    default applies (`"ports": null` is `{}`). A required field stays required.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=65536)

    @model_validator(mode="before")
    @classmethod
    def _null_means_not_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and None in data.values():
            fields = cls.model_fields
            return {
                key: value
                for key, value in data.items()
                if value is not None or key not in fields or fields[key].is_required()
            }
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # Say so in the schema too: every optional field also takes null.
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        for name, prop in (target.get("properties") or {}).items():
            field = cls.model_fields.get(name)
            if field is None or field.is_required() or _allows_null(prop):
                continue
            target["properties"][name] = {"anyOf": [_without_meta(prop), {"type": "null"}], **_meta(prop)}
        return schema


_META_KEYS = ("title", "description", "default", "examples")


def _meta(prop: dict[str, Any]) -> dict[str, Any]:
    return {key: prop[key] for key in _META_KEYS if key in prop}


def _without_meta(prop: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in prop.items() if key not in _META_KEYS}


def _allows_null(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(option.get("type") == "null" for option in prop.get("anyOf", []))


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="allow")


# Container names as the engine accepts them (moby's RestrictedNameChars), with a length cap.
ContainerName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")]


def _strip_slash(value: Any) -> Any:
    # The engine reports names as "/web"; accept that spelling too.
    return value[1:] if isinstance(value, str) and value.startswith("/") else value


ContainerRef = Annotated[
    str,
    BeforeValidator(_strip_slash),
    StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$"),
    Field(description="Container id (full or unique prefix) or name."),
]
TaskId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# What the original took for an app id (e.g. `html_site1`) that is also safe as a container name
# and a file name. Where a name must be lower-case (an image tag) it is lower-cased there.
APP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
AppId = Annotated[
    str,
    # pydantic checks patterns with Rust's regex, where `$` is the end of the text (no "x\n").
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"),
    Field(description="Letters, digits, `_`, `.` and `-`, starting with a letter or digit; names files."),
]


_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
IMAGE_NAME_RE = re.compile(rf"^{_COMPONENT}(?::[0-9]{{1,5}})?(?:/{_COMPONENT})*(?::{_TAG})?$")
_IMAGE_ID_RE = re.compile(r"^(?:sha256:)?[a-f0-9]{12,64}$")
_DIGEST_RE = re.compile(rf"^{_COMPONENT}(?::[0-9]{{1,5}})?(?:/{_COMPONENT})*@sha256:[a-f0-9]{{64}}$")


def _image_ref(value: str) -> str:
    if len(value) > 255 or not (
        IMAGE_NAME_RE.fullmatch(value) or _IMAGE_ID_RE.fullmatch(value) or _DIGEST_RE.fullmatch(value)
    ):
        raise ValueError("not a valid image reference (name[:tag], name@sha256:..., or image id)")
    return value


def _image_tag(value: str) -> str:
    if len(value) > 255 or not IMAGE_NAME_RE.fullmatch(value):
        raise ValueError("not a valid image tag (lower-case repository[:tag])")
    return value


ImageRef = Annotated[str, AfterValidator(_image_ref)]
ImageTag = Annotated[str, AfterValidator(_image_tag)]
TagName = Annotated[str, StringConstraints(pattern=rf"^{_TAG}$")]
RepoName = Annotated[
    str, StringConstraints(pattern=rf"^{_COMPONENT}(?::[0-9]{{1,5}})?(?:/{_COMPONENT})*$", max_length=255)
]

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)$", re.IGNORECASE)
MIN_MEMORY = 6 << 20  # the engine refuses less than 6 MiB


def parse_bytes(value: str | int) -> int:
    """'512m' -> 536870912. Units b, k, m, g, t are powers of 1024, as in the docker CLI."""
    if isinstance(value, int):
        return value
    match = _MEMORY_RE.fullmatch(value.strip())
    if not match:
        raise ValueError("use a number with an optional unit b, k, m, g or t, e.g. '512m' or '1g'")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _memory(value: object) -> int:
    # A before-validator sees the raw JSON value: anything but a string or an integer is refused
    # here (a TypeError would escape validation and become a 500).
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("memory must be a number of bytes or a string like '512m'")
    size = parse_bytes(value)
    if size < MIN_MEMORY:
        raise ValueError("memory limit must be at least 6m")
    if size > 1 << 42:
        raise ValueError("memory limit is implausibly large")
    return size


MemorySize = Annotated[
    int, BeforeValidator(_memory), Field(description="Bytes, or a string like '512m' or '1g'.")
]

_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,255}$")


def _env(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 1000:
        raise ValueError("at most 1000 environment variables")
    for key, item in value.items():
        if not _ENV_KEY_RE.fullmatch(key):
            raise ValueError(f"invalid environment variable name {key[:64]!r}")
        if "\x00" in item or len(item) > 32768:
            raise ValueError(f"invalid value for {key}: NUL byte or longer than 32768 characters")
    return value


EnvMap = Annotated[dict[str, str], AfterValidator(_env)]

_PORT_KEY_RE = re.compile(r"^(\d{1,5})(?:/(tcp|udp|sctp))?$")


def _ports(value: dict[str, int | None]) -> dict[str, int | None]:
    if len(value) > 100:
        raise ValueError("at most 100 port mappings")
    normalised: dict[str, int | None] = {}
    for key, host_port in value.items():
        match = _PORT_KEY_RE.fullmatch(key)
        if not match or not 1 <= int(match.group(1)) <= 65535:
            raise ValueError(f"invalid container port {key[:32]!r}; use e.g. '80/tcp'")
        if host_port is not None and not 1 <= host_port <= 65535:
            raise ValueError(f"host port for {key} must be 1-65535")
        normalised[f"{int(match.group(1))}/{match.group(2) or 'tcp'}"] = host_port
    return normalised


PortMap = Annotated[
    dict[str, int | None],
    AfterValidator(_ports),
    Field(description='Container port to host port, e.g. {"80/tcp": 8080}; null picks a free port.'),
]


def _argv(value: object) -> list[str]:
    if not isinstance(value, str | list) or (
        isinstance(value, list) and not all(isinstance(a, str) for a in value)
    ):
        raise ValueError("command must be a string or a list of strings")
    return split_words(value, max_args=512, max_arg=16384)


Argv = Annotated[
    list[str],
    BeforeValidator(_argv),
    Field(description="A list of arguments, or a string split into words as a POSIX shell would."),
]

_CPUSET_RE = re.compile(r"^\d{1,4}(?:-\d{1,4})?(?:,\d{1,4}(?:-\d{1,4})?)*$")
CpuSet = Annotated[str, StringConstraints(pattern=_CPUSET_RE.pattern), Field(examples=["0-1"])]

# A path an HTTP probe may ask for (a health check's).
HttpPath = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~!$&'()*+,;=:@/?%-]{0,511}$")]
