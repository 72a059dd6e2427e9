"""`docker-manager service install`: the systemd unit that runs the service (restart on failure,
after the engine and nginx, the data folder as its state directory), written and enabled."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from docker_manager.util.files import write_atomic

UNIT_NAME = "docker-manager.service"
TEMPLATE = Path(__file__).resolve().parent / "templates" / UNIT_NAME
DEFAULT_DATA_DIR = Path("/var/lib/docker-manager")


def executable() -> str:
    """How systemd starts this installation's `docker-manager` (the one running now)."""
    found = shutil.which("docker-manager")
    here = Path(sys.executable).with_name("docker-manager")
    if here.exists():
        return str(here)
    return found or f"{sys.executable} -m docker_manager"


def render(*, exec_path: str, data_dir: Path) -> str:
    # systemd makes /var/lib/<name> itself (0700) when it is the data folder; elsewhere the
    # service makes it at start (Settings.ensure_dirs).
    state = "StateDirectory=docker-manager\nStateDirectoryMode=0700" if data_dir == DEFAULT_DATA_DIR else ""
    text = TEMPLATE.read_text()
    text = text.replace("@EXEC@", exec_path).replace("@DATA_DIR@", str(data_dir))
    return text.replace("@STATE_DIRECTORY@\n", f"{state}\n" if state else "")


def install(unit_dir: Path, *, data_dir: Path, enable: bool) -> tuple[Path, list[str]]:
    """Write the unit into `unit_dir`; with `enable` and a running systemd, reload and enable it
    now. Returns the file and what was run (or what the operator should run)."""
    target = unit_dir / UNIT_NAME
    unit_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(target, render(exec_path=executable(), data_dir=data_dir).encode(), mode=0o644)
    steps = ["systemctl daemon-reload", f"systemctl enable --now {UNIT_NAME}"]
    if not enable or not Path("/run/systemd/system").is_dir():
        return target, [f"run: {step}" for step in steps]
    for step in steps:
        subprocess.run(step.split(), check=True)
    return target, steps
