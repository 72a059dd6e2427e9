"""The host-level option policy and the engine create body."""

from __future__ import annotations

import pytest

from docker_manager.auth import Principal, Scope
from docker_manager.config import Settings
from docker_manager.errors import PolicyViolation
from docker_manager.schemas.containers import RunExtendedRequest, RunRequest, VolumeBind
from docker_manager.services.containers import ContainerSpec, check_policy, create_config, host_level_options

OPERATOR = Principal(token_id="o", name="o", scopes=frozenset({Scope.OPERATE}))
ADMIN = Principal(token_id="a", name="a", scopes=frozenset({Scope.ADMIN}))


def settings(**kwargs: object) -> Settings:
    return Settings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"privileged": True}, "privileged"),
        ({"cap_add": ["SYS_ADMIN"]}, "cap_add"),
        ({"devices": ["/dev/sda"]}, "devices"),
        ({"network_mode": "host"}, "network_mode=host"),
        ({"network": "host"}, "network_mode=host"),
        ({"pid_mode": "host"}, "pid_mode=host"),
        ({"ipc_mode": "host"}, "ipc_mode=host"),
        ({"userns_mode": "host"}, "userns_mode=host"),
        ({"security_opt": ["seccomp=unconfined"]}, "security_opt"),
        ({"sysctls": {"net.ipv4.ip_forward": "1"}}, "sysctls"),
        ({"volumes": {"/": {"bind": "/host"}}}, "bind mounts of host paths"),
        (
            {"volumes": {"/var/run/docker.sock": {"bind": "/var/run/docker.sock"}}},
            "bind mounts of host paths",
        ),
        (
            {"log_driver": "syslog", "log_options": {"syslog-address": "tcp://1.2.3.4:514"}},
            "log_driver=syslog",
        ),
    ],
)
def test_each_host_level_option_is_refused_below_admin(fields: dict[str, object], named: str) -> None:
    spec = ContainerSpec.from_run_extended(RunExtendedRequest(image="bb", **fields))  # type: ignore[arg-type]
    config = create_config(spec, settings())
    assert named in host_level_options(config)
    with pytest.raises(PolicyViolation, match="admin"):
        check_policy(config, OPERATOR, settings())
    with pytest.raises(PolicyViolation, match="DM_ALLOW_PRIVILEGED_OPTIONS"):
        check_policy(config, ADMIN, settings())
    check_policy(config, ADMIN, settings(allow_privileged_options=True))


def test_ordinary_options_pass() -> None:
    spec = ContainerSpec.from_run_extended(
        RunExtendedRequest(
            image="bb",
            volumes={"data": VolumeBind(bind="/data")},
            log_driver="json-file",
            log_options={"max-size": "10m"},
            cap_drop=["NET_RAW"],
            network="appnet",
        )
    )
    config = create_config(spec, settings())
    assert host_level_options(config) == []
    check_policy(config, OPERATOR, settings())


def test_an_engine_body_with_host_mounts_from_any_path_is_caught() -> None:
    # What update-port would copy from an inspected container.
    body = {"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}], "PidMode": "host"}}
    assert host_level_options(body) == ["pid_mode=host", "bind mounts of host paths"]
    with pytest.raises(PolicyViolation):
        check_policy(body, OPERATOR, settings())


def test_create_config_carries_limits_ports_labels_and_name_rule() -> None:
    spec = ContainerSpec.from_run(
        RunRequest(
            image="bb",
            command="httpd -f -p 80",
            ports={"80/tcp": 18080},
            env={"A": "1"},
            cpu=0.5,
            cpuset="0",
            memory="64m",
            app_id="web",
            task_id="docker_build-0123456789",
        )
    )
    assert spec.container_name == "web-docker_build-0123456789"
    config = create_config(spec, settings())
    host = config["HostConfig"]
    assert config["Cmd"] == ["httpd", "-f", "-p", "80"]
    assert config["Env"] == ["A=1"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 << 20
    assert host["CpusetCpus"] == "0"
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    assert config["Labels"] == {
        "docker-manager.managed": "true",
        "docker-manager.app_id": "web",
        "docker-manager.task_id": "docker_build-0123456789",
    }
    assert "Privileged" not in host


def test_explicit_name_wins_over_the_rule() -> None:
    spec = ContainerSpec.from_run(RunRequest(image="bb", name="mine", app_id="web", task_id="t1"))
    assert spec.container_name == "mine"
    assert ContainerSpec.from_run(RunRequest(image="bb", app_id="web")).container_name is None
