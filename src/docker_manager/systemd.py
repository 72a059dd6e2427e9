"""`docker-manager service install`: the systemd unit that runs the service (restart on failure,
after the engine and nginx, the data folder as its state directory), written and enabled.

Root runs what the unit names at every boot: the installation must be root's alone (owned by
root, writable by nobody else, up to `/`), or a local user who can change it would run code as
root. `install` refuses otherwise.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from docker_manager.util.files import write_atomic

UNIT_NAME = "docker-manager.service"
SYSTEM_UNITS = Path("/etc/systemd/system")
TEMPLATE = Path(__file__).resolve().parent / "templates" / UNIT_NAME
DEFAULT_DATA_DIR = Path("/var/lib/docker-manager")


class UnsafeInstallation(Exception):
    """A path the unit would run from can be changed by someone other than root."""


def executable() -> Path:
    """This installation's `docker-manager` (beside the running interpreter, as a venv has it)."""
    return Path(sys.executable).with_name("docker-manager")


def check_root_only(paths: list[Path]) -> None:
    """Each path and every folder above it: owned by root, not writable by group or others
    (a sticky folder such as /tmp excepted: nobody can replace another's entry there)."""
    for path in paths:
        for part in (path, *path.parents):
            info = os.lstat(part)
            sticky = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
            if info.st_uid != 0 or (info.st_mode & 0o022 and not sticky):
                raise UnsafeInstallation(
                    f"{part} is owned by uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}: "
                    "whoever can change it would run code as root at every boot"
                )


def _quoted(value: str) -> str:
    """A value as a unit file reads it: `%` is a specifier, spaces split words."""
    escaped = value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render(*, exec_path: Path, data_dir: Path, config: Path | None) -> str:
    # systemd makes /var/lib/<name> itself (0700) when it is the data folder; elsewhere the
    # service makes it at start (Settings.ensure_dirs).
    state = "StateDirectory=docker-manager\nStateDirectoryMode=0700\n" if data_dir == DEFAULT_DATA_DIR else ""
    lines = {
        "@EXEC@": _quoted(str(exec_path)),
        "Environment=@DATA_DIR@\n": f"Environment={_quoted(f'DM_DATA_DIR={data_dir}')}\n",
        # The working directory of a unit is `/`: a config.json in effect now is named outright.
        "@CONFIG@\n": f"Environment={_quoted(f'DM_CONFIG={config}')}\n" if config else "",
        "@STATE_DIRECTORY@\n": state,
    }
    text = TEMPLATE.read_text()
    for placeholder, value in lines.items():
        text = text.replace(placeholder, value)
    return text


def install(unit_dir: Path, *, data_dir: Path, config: Path | None, enable: bool) -> tuple[Path, list[str]]:
    """Write the unit into `unit_dir`. With `enable`, the system's unit folder and a running
    systemd: reload, enable, (re)start it. Returns the file and what was run, or what to run."""
    exec_path = executable()
    check_root_only([exec_path, Path(__file__).resolve().parent])
    target = unit_dir / UNIT_NAME
    unit_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(target, render(exec_path=exec_path, data_dir=data_dir, config=config).encode(), mode=0o644)
    steps = ["systemctl daemon-reload", f"systemctl enable {UNIT_NAME}", f"systemctl restart {UNIT_NAME}"]
    if not enable or unit_dir.resolve() != SYSTEM_UNITS or not Path("/run/systemd/system").is_dir():
        return target, [f"run: {step}" for step in steps]
    for step in steps:
        subprocess.run(step.split(), check=True)
    return target, steps
