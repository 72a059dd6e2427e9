"""Containers: what they are to be (`spec`), what they may be (`policy`), running and managing
them (`service`), what comes out of them (`output`) and the files inside them (`files`)."""

from docker_manager.services.containers.files import ContainerFiles
from docker_manager.services.containers.policy import ContainerPolicy
from docker_manager.services.containers.service import ContainerService, StopNotices
from docker_manager.services.containers.spec import (
    KEPT_CONFIG,
    KEPT_HOST_CONFIG,
    ContainerSpec,
    check_host_port,
    create_body_of,
    create_config,
    recreate_config,
)

__all__ = [
    "KEPT_CONFIG",
    "KEPT_HOST_CONFIG",
    "ContainerFiles",
    "ContainerPolicy",
    "ContainerService",
    "ContainerSpec",
    "StopNotices",
    "check_host_port",
    "create_body_of",
    "create_config",
    "recreate_config",
]
