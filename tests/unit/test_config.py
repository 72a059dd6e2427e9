"""Settings: env beats config.json beats defaults; unsafe listeners are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from docker_manager.config import Settings


def test_config_json_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "log_stream_endpoint": "http://127.0.0.1:9/sink",
                "auth_header": {"Authorization": "Bearer x"},
                "port": 9001,
            }
        )
    )
    monkeypatch.setenv("DM_CONFIG", str(config))
    settings = Settings()
    assert settings.log_stream_endpoint == "http://127.0.0.1:9/sink"
    assert settings.auth_header == {"Authorization": "Bearer x"}
    assert settings.port == 9001
    monkeypatch.setenv("DM_PORT", "9002")
    assert Settings().port == 9002


def test_non_object_auth_header_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auth_header": "nonsense"}))
    monkeypatch.setenv("DM_CONFIG", str(config))
    assert Settings().auth_header == {}


def test_remote_listener_needs_explicit_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DM_CONFIG", "/nonexistent/config.json")
    with pytest.raises(ValidationError, match="DM_ALLOW_REMOTE"):
        Settings(host="0.0.0.0")
    assert Settings(host="0.0.0.0", allow_remote=True).host == "0.0.0.0"
    assert Settings(host="::1").host == "::1"


def test_derived_paths_and_reserved_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DM_CONFIG", "/nonexistent/config.json")
    settings = Settings(data_dir=tmp_path, port=8123)
    assert settings.builds_path == tmp_path / "builds"
    assert settings.context_paths == [tmp_path / "contexts"]
    assert 8123 in settings.forbidden_host_ports
    assert settings.sqlalchemy_url.startswith("sqlite+aiosqlite:///")


def test_published_ports_must_be_reachable_on_loopback(tmp_path: Path) -> None:
    # Sites reach published ports on 127.0.0.1: a port published on a LAN address only would be
    # free on loopback for any local user to bind.
    with pytest.raises(ValueError, match="loopback"):
        Settings(data_dir=tmp_path, publish_host_ip="10.0.0.5")
    for address in ("127.0.0.1", "0.0.0.0", "::1"):
        assert Settings(data_dir=tmp_path, publish_host_ip=address).publish_host_ip == address
