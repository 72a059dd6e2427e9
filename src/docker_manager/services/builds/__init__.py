"""Builds: Dockerfile text (`dockerfile`), checked requests (`plan`), the engine's output
(`output`), the build task (`service`) and shipping the result (`shipping`)."""

from docker_manager.services.builds.dockerfile import (
    artefact_name,
    image_name_for,
    parse_dockerfile,
    with_labels,
)
from docker_manager.services.builds.output import BuildOutput
from docker_manager.services.builds.plan import BuildPlan, BuildSource
from docker_manager.services.builds.service import BUILD_TASK, BuildService

__all__ = [
    "BUILD_TASK",
    "BuildOutput",
    "BuildPlan",
    "BuildService",
    "BuildSource",
    "artefact_name",
    "image_name_for",
    "parse_dockerfile",
    "with_labels",
]
