"""The container create-body policy (an allowlist) and the engine create body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from docker_manager.auth import Principal, Scope
from docker_manager.config import Settings
from docker_manager.db import Database
from docker_manager.errors import NotFound, PolicyViolation
from docker_manager.schemas.containers import RunExtendedRequest, RunRequest, VolumeBind
from docker_manager.services.containers import ContainerPolicy, ContainerSpec, create_config
from docker_manager.services.containers.options import ContainerOptions
from docker_manager.services.ownership.record import Kind, Ownership

OPERATOR = Principal(token_id="o", name="o", scopes=frozenset({Scope.OPERATE}))
ADMIN = Principal(token_id="a", name="a", scopes=frozenset({Scope.ADMIN}))


def settings(**kwargs: object) -> Settings:
    return Settings(**kwargs)  # type: ignore[arg-type]


class _Existing:
    """The engine's volumes or networks: these names exist, anything else is NotFound."""

    def __init__(self, known: dict[str, str]) -> None:
        self.known = known

    async def inspect(self, name: str) -> dict[str, Any]:
        if name not in self.known:
            raise NotFound(name)
        options = {"o": "bind", "device": "/"} if name == "remade" else None
        return {"Id": self.known[name], "Name": name, "Driver": "local", "Options": options}


class FakeDocker:
    def __init__(self) -> None:
        self.volumes = _Existing(
            {
                "theirs-db": "theirs-db",
                "mine-data": "mine-data",
                "other-app": "other-app",
                "remade": "remade",
                "legacy": "legacy",
            }
        )
        self.networks = _Existing({"lan": "net-lan", "appnet": "net-appnet"})


@pytest.fixture
async def ownership(tmp_path: Path) -> AsyncIterator[Ownership]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    await db.open()
    record = Ownership(db.engine)
    await record.load()
    await record.record(Kind.VOLUME, "mine-data", name="mine-data", app_id="web", created_by="o")
    await record.record(Kind.VOLUME, "other-app", name="other-app", app_id="billing")
    await record.record(Kind.VOLUME, "remade", name="remade", app_id="web")
    await record.record(Kind.VOLUME, "legacy", name="legacy", app_id="web")  # before tokens
    await record.record(Kind.NETWORK, "net-appnet", name="appnet")
    yield record
    await db.close()


def policy(ownership: Ownership, **kwargs: object) -> ContainerPolicy:
    return ContainerPolicy(FakeDocker(), ownership, ContainerOptions.of(settings(**kwargs)))  # type: ignore[arg-type]


def body(**fields: Any) -> dict[str, Any]:
    spec = ContainerSpec.from_run_extended(RunExtendedRequest(image="bb", app_id="web", **fields))
    return create_config(spec, settings().publish_host_ip)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"privileged": True}, "Privileged"),
        ({"cap_add": ["SYS_ADMIN"]}, "CapAdd"),
        ({"devices": ["/dev/sda"]}, "Devices"),
        ({"network_mode": "host"}, "network_mode=host"),
        ({"network": "host"}, "network_mode=host"),
        ({"network_mode": "container:db"}, "network_mode=container:db"),
        ({"pid_mode": "host"}, "PidMode"),
        ({"ipc_mode": "host"}, "ipc_mode=host"),
        ({"userns_mode": "host"}, "UsernsMode"),
        ({"security_opt": ["seccomp=unconfined"]}, "SecurityOpt"),
        ({"sysctls": {"net.ipv4.ip_forward": "1"}}, "Sysctls"),
        ({"storage_opt": {"size": "1G"}}, "StorageOpt"),
        ({"volumes": {"/": {"bind": "/host"}}}, "bind mount of the host path /"),
        (
            {"volumes": {"/var/run/docker.sock": {"bind": "/s"}}},
            "bind mount of the host path /var/run/docker.sock",
        ),
        ({"volumes": {"theirs-db": {"bind": "/d"}}}, "volume theirs-db, which this service did not create"),
        ({"volumes": {"other-app": {"bind": "/d"}}}, "volume other-app of another app"),
        (
            {"volumes": {"remade": {"bind": "/d"}}},
            "volume remade, which is no longer the plain volume this service made",
        ),
        ({"network": "lan"}, "network lan, which this service did not create"),
        (
            {"log_driver": "syslog", "log_options": {"syslog-address": "tcp://1.2.3.4:514"}},
            "log_driver=syslog",
        ),
    ],
)
async def test_each_host_level_option_is_refused_below_admin(
    ownership: Ownership, fields: dict[str, object], named: str
) -> None:
    config = body(**fields)
    assert named in await policy(ownership).host_level(config)
    with pytest.raises(PolicyViolation, match="admin"):
        await policy(ownership).check(config, OPERATOR)
    with pytest.raises(PolicyViolation, match="DM_ALLOW_PRIVILEGED_OPTIONS"):
        await policy(ownership).check(config, ADMIN)
    assert await policy(ownership, allow_privileged_options=True).check(config, ADMIN) is True


async def test_ordinary_options_pass(ownership: Ownership) -> None:
    config = body(
        volumes={"mine-data": VolumeBind(bind="/data"), "brand-new": VolumeBind(bind="/new")},
        log_driver="json-file",
        log_options={"max-size": "10m"},
        cap_drop=["NET_RAW"],
        network="appnet",
        restart_policy={"name": "always"},
        pids_limit=100,
    )
    assert await policy(ownership).host_level(config) == []
    assert await policy(ownership).check(config, OPERATOR) is False
    assert await policy(ownership).host_level(body(network="a-new-net")) == []


async def test_a_volume_is_mounted_by_the_token_that_made_it(ownership: Ownership) -> None:
    # app_id is the caller's word: another operate token naming the app does not get its volume
    # (a run with `detach: false` would print its secrets); an admin does, and so does a rollback
    # or update-port, which make the app's own container again.
    config = body(volumes={"mine-data": VolumeBind(bind="/data")})
    other = Principal(token_id="x", name="x", scopes=frozenset({Scope.OPERATE}))
    with pytest.raises(PolicyViolation, match="volume mine-data, which another token made"):
        await policy(ownership).check(config, other)
    assert await policy(ownership).check(config, other, recreated=True) is False
    assert await policy(ownership).check(config, OPERATOR) is False
    # An admin neither (a volume squatted before the app's deploy would get what the app writes),
    # unless host-level options are allowed; one that predates per-token volumes, yes.
    with pytest.raises(PolicyViolation, match="another token made"):
        await policy(ownership).check(config, ADMIN)
    assert await policy(ownership).check(body(volumes={"legacy": VolumeBind(bind="/d")}), ADMIN) is False


async def test_a_port_another_apps_site_reaches_is_not_published(
    ownership: Ownership, tmp_path: Path
) -> None:
    from docker_manager.adapters.nginx import Nginx, NginxPaths
    from docker_manager.adapters.site_header import Upstream
    from docker_manager.errors import PortInUse

    conf = tmp_path / "conf.d"
    conf.mkdir()
    paths = NginxPaths("nginx", None, None, tmp_path / "pid", tmp_path / "err")
    render = Nginx(paths, listen="80", tls_listen="443", cert_dir=None).render
    sites = {
        "shop": (Upstream("127.0.0.1", 18081, container="a" * 64, published="80/tcp"), "shop"),
        "admin": (Upstream("127.0.0.1", 18082, kind="host"), None),
        "old": (Upstream("127.0.0.1", 18083, container="b" * 64, published="80/tcp", down=True), "blog"),
    }
    for name, (upstream, app_id) in sites.items():
        text = render(ident=name, domain=f"{name}.example", upstream=upstream, app_id=app_id)
        (conf / f"{name}.conf").write_text(text)
    checked = policy(ownership, nginx_conf_dirs=[conf])

    def published(port: int, app_id: str) -> dict[str, Any]:
        spec = ContainerSpec.from_run_extended(
            RunExtendedRequest(image="bb", app_id=app_id, ports={"80/tcp": port})
        )
        return create_config(spec, settings().publish_host_ip)

    with pytest.raises(PortInUse, match=r"shop\.example"):
        await checked.check(published(18081, "web"), OPERATOR)
    with pytest.raises(PortInUse, match=r"admin\.example"):  # a host-level site: whoever asks
        await checked.check(published(18082, "web"), ADMIN)
    assert await checked.check(published(18081, "shop"), OPERATOR) is False  # its own app
    assert await checked.check(published(18083, "web"), OPERATOR) is False  # a site that is down


async def test_anything_not_on_the_allowlist_is_host_level(ownership: Ownership) -> None:
    # Fields nobody listed, as an update-port recreation could copy them from an inspected container.
    config = {
        "Image": "bb",
        "HostConfig": {
            "Mounts": [{"Type": "volume", "Source": "theirs-db", "Target": "/d"}],
            "Tmpfs": {"/run": ""},
            "VolumesFrom": ["db"],
            "SomeFutureOption": {"x": 1},
            "PortBindings": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}]},
        },
        "NetworkingConfig": {"EndpointsConfig": {"lan": {}}},
    }
    found = await policy(ownership).host_level(config)
    assert set(found) == {
        "NetworkingConfig",
        "Mounts",
        "Tmpfs",
        "VolumesFrom",
        "SomeFutureOption",
        "ports published on 0.0.0.0",
    }
    with pytest.raises(PolicyViolation):
        await policy(ownership).check(config, OPERATOR)


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
    config = create_config(spec, settings().publish_host_ip)
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


def test_a_read_token_sees_no_command_env_or_log_options() -> None:
    from docker_manager.services.containers.output import redact_for_read

    data = {
        "Args": ["--password=hunter2"],
        "Config": {
            "Env": ["DB_PASSWORD=hunter2", "MODE=prod"],
            "Cmd": ["serve", "--password=hunter2"],
            "Entrypoint": ["/app"],
            "Healthcheck": {"Test": ["CMD", "curl", "-u", "admin:hunter2", "localhost"]},
        },
        "HostConfig": {"LogConfig": {"Type": "splunk", "Config": {"splunk-token": "hunter2"}}},
    }
    redact_for_read(data)
    assert "hunter2" not in str(data)
    assert data["Config"]["Env"] == ["DB_PASSWORD=<redacted>", "MODE=<redacted>"]
