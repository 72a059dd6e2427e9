"""The systemd unit: `docker-manager service install` writes it, and `systemd-analyze verify`
(systemd's own checker) passes on it; the same checker refuses a broken one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from docker_manager.systemd import UnsafeInstallation, check_root_only, render


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )


def install(unit_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DM_")}
    argv = [
        sys.executable,
        "-m",
        "docker_manager",
        "service",
        "install",
        "--unit-dir",
        str(unit_dir),
        "--no-enable",
    ]
    return subprocess.run(argv, env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_the_unit_installs_and_verifies(tmp_path: Path) -> None:
    done = install(tmp_path)
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "docker-manager.service"
    assert "run: systemctl restart docker-manager.service" in done.stdout
    text = unit.read_text()
    assert unit.stat().st_mode & 0o777 == 0o644
    for line in (
        "Restart=on-failure",
        "After=network-online.target docker.service nginx.service",
        "StateDirectory=docker-manager",
        'Environment="DM_DATA_DIR=/var/lib/docker-manager"',
        "WantedBy=multi-user.target",
        "LimitNOFILE=65536",  # (a connection flood does not reach the file limit: hostile callers)
    ):
        assert line in text.splitlines(), line
    exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert Path(exec_line.removeprefix("ExecStart=").split()[0].strip('"')).exists()
    checked = verify(unit)
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr
    # A data folder elsewhere: no state directory (the service makes its folder itself).
    other = tmp_path / "other"
    assert install(other, DM_DATA_DIR="/srv/dm").returncode == 0
    assert "StateDirectory" not in (other / "docker-manager.service").read_text()
    assert verify(other / "docker-manager.service").returncode == 0


def test_the_checker_refuses_a_broken_unit(tmp_path: Path) -> None:
    assert install(tmp_path).returncode == 0
    unit = tmp_path / "docker-manager.service"
    text = unit.read_text().replace("ExecStart=", "ExecStart=/nonexistent/docker-manager-x ")
    unit.write_text(text.replace("Restart=on-failure", "Restart=sometimes"))
    assert verify(unit).returncode != 0


def test_an_installation_others_can_change_is_refused(tmp_path: Path) -> None:
    """Root runs the unit's ExecStart at every boot: a folder another user may write on the way
    to it is refused (a sticky one such as /tmp is fine)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    binary = shared / "docker-manager"
    binary.write_text("#!/bin/sh\n")
    check_root_only([binary])
    shared.chmod(0o777)
    with pytest.raises(UnsafeInstallation, match="run code as root"):
        check_root_only([binary])
    os.chown(binary, 65534, 65534)
    shared.chmod(0o755)
    with pytest.raises(UnsafeInstallation, match="uid 65534"):
        check_root_only([binary])


def test_values_are_quoted_for_systemd(tmp_path: Path) -> None:
    text = render(exec_path=Path("/opt/dm 1/bin/docker-manager"), data_dir=Path("/srv/d%m"), config=None)
    assert 'ExecStart="/opt/dm 1/bin/docker-manager" serve' in text
    assert 'Environment="DM_DATA_DIR=/srv/d%%m"' in text
    unit = tmp_path / "docker-manager.service"
    unit.write_text(text.replace('"/opt/dm 1/bin/docker-manager"', sys.executable))
    assert verify(unit).returncode == 0, verify(unit).stderr
