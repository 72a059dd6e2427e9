"""A task's summary, `build.info.json`: the fields several writers share, typed, with readers.

The file is the original's contract: builds, localrun, the health check, sign-domain and
update-port each merge their part into it (`TaskContext.merge_summary`, `TaskFiles.merge_info`).
This model is how code reads it back: known fields are typed, everything else is kept as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from docker_manager.runner.files import INFO_JSON, read_json


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")


class LocalrunSection(_Section):
    """What localrun recorded about the container it started."""

    app_id: str | None = None
    image_id: str | None = None
    image_tag: str | None = None
    internal_port_key: str | None = None
    ports_requested: dict[str, int | None] | None = None


class Summary(_Section):
    status: str | None = None
    stage: str | None = None
    app_id: str | None = None
    tag: str | None = None
    image_id: str | None = None
    container_id: str | None = None
    container_name: str | None = None
    host_port: int | None = None
    localrun: LocalrunSection | None = None

    @classmethod
    def read(cls, folder: Path) -> Summary | None:
        """The folder's summary, or None when it has none (or it is not valid). Blocking."""
        data = read_json(folder / INFO_JSON)
        if data is None:
            return None
        try:
            return cls.model_validate(data)
        except ValidationError:
            return cls.model_validate({k: v for k, v in data.items() if k not in cls.model_fields})

    @property
    def app(self) -> str | None:
        """The app the task belongs to, as recorded."""
        return self.app_id or (self.localrun.app_id if self.localrun else None)

    @property
    def tag_name(self) -> str | None:
        """The repository part of the tag (`shop` of `registry:5000/team/shop:v1`)."""
        if not self.tag:
            return None
        return self.tag.rsplit("/", 1)[-1].split(":")[0]

    @property
    def container(self) -> str | None:
        """The container the task ran (its id, else its name)."""
        return self.container_id or self.container_name

    @property
    def internal_port(self) -> int | None:
        """The container's own port localrun recorded (`80` of `80/tcp`)."""
        key = self.localrun.internal_port_key if self.localrun else None
        return int(key.split("/")[0]) if key else None

    @property
    def internal_port_key(self) -> str | None:
        return self.localrun.internal_port_key if self.localrun else None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)
