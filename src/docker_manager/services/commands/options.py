"""What host commands are configured with (from the flat `DM_*` settings)."""

from __future__ import annotations

from dataclasses import dataclass

from docker_manager.config import Roots, Settings


@dataclass(frozen=True, slots=True)
class CommandOptions:
    roots: Roots  # commands run in the work roots; their task folders go to the builds root
    allow_shell: bool  # a string `cmd` through /bin/sh -c, as the original did
    timeout: float
    max_line_bytes: int
    max_output_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> CommandOptions:
        return cls(
            roots=Roots.of(settings),
            allow_shell=settings.run_allow_shell,
            timeout=settings.run_timeout,
            max_line_bytes=settings.run_max_line_bytes,
            max_output_bytes=settings.run_max_output_bytes,
        )
