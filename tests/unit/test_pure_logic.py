"""Engine-free checks of the small pieces of logic the integration tests only reach through Docker:
site files rendered and read back, engine errors mapped, registry names, build output lines,
re-creation bodies and the streaming tar reader."""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from docker_manager.adapters.docker.client import map_engine_error
from docker_manager.adapters.docker.registry import DOCKER_HUB, registry_of
from docker_manager.adapters.docker.types import ContainerInfo
from docker_manager.adapters.netfilter import _valid_front, _valid_target, chain_of, front_of
from docker_manager.adapters.nginx import Nginx, NginxPaths, same_configuration
from docker_manager.adapters.site_header import Upstream, read_header
from docker_manager.errors import Conflict, EngineError, InvalidInput, NotFound, PortInUse
from docker_manager.services.builds.output import LOG_TAIL, BuildOutput
from docker_manager.services.containers.spec import recreate_config
from docker_manager.services.sites.upstreams import IDENT_MAX, ident_of
from docker_manager.util.tarstream import TarFormatError, TarReader


def _nginx(cert_dir: Path | None = None) -> Nginx:
    paths = NginxPaths(
        binary="nginx", conf=None, prefix=None, pid_file=Path("/x.pid"), error_log=Path("/x.log")
    )
    return Nginx(paths, listen="127.0.0.1:8080", tls_listen="127.0.0.1:8443", cert_dir=cert_dir)


# --- nginx site files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "upstream",
    [
        Upstream(host="127.0.0.1", port=8001),
        Upstream(host="172.17.0.5", port=80, container="a" * 64),
        Upstream(host="127.0.0.1", port=80, container="b" * 12, down=True),
        Upstream(host="127.0.0.1", port=9000, kind="host"),
    ],
)
def test_a_rendered_site_reads_back_as_written(tmp_path: Path, upstream: Upstream) -> None:
    site = tmp_path / "site.conf"
    site.write_text(_nginx().render(ident="s1", domain="app.example.com", upstream=upstream, app_id="shop"))
    header = read_header(site)
    assert header is not None
    assert (header.app_id, header.domain, header.port) == ("shop", "app.example.com", upstream.port)
    assert header.upstream == upstream


def test_a_down_site_sends_nothing_to_the_old_address() -> None:
    text = _nginx().render(
        ident="s1",
        domain="a.test",
        upstream=Upstream("172.17.0.9", 80, "c" * 12, down=True),
        app_id=None,
    )
    assert "server 172.17.0.9:80 down;" in text
    assert "upstream=down" in text


def test_tls_is_used_only_when_both_files_exist(tmp_path: Path) -> None:
    nginx = _nginx(cert_dir=tmp_path)
    plain = nginx.render(ident="s1", domain="a.test", upstream=Upstream("127.0.0.1", 81), app_id=None)
    assert "ssl_certificate" not in plain and "listen 127.0.0.1:8080;" in plain
    (tmp_path / "a.test.crt").write_text("c")
    assert "ssl_certificate" not in nginx.render(
        ident="s1", domain="a.test", upstream=Upstream("127.0.0.1", 81), app_id=None
    )
    (tmp_path / "a.test.key").write_text("k")
    tls = nginx.render(ident="s1", domain="a.test", upstream=Upstream("127.0.0.1", 81), app_id=None)
    assert "listen 127.0.0.1:8443 ssl" in tls and "return 301 https://" in tls


def test_files_that_are_not_ours_have_no_header(tmp_path: Path) -> None:
    hand_made = tmp_path / "hand.conf"
    hand_made.write_text("server { listen 80; }\n")
    assert read_header(hand_made) is None
    assert read_header(tmp_path / "missing.conf") is None


# --- engine errors and names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (500, "driver failed: Bind for 0.0.0.0:8080 failed: port is already allocated", PortInUse),
        (500, "listen tcp 0.0.0.0:80: bind: address already in use", PortInUse),
        (404, "No such container: x", NotFound),
        (409, "Conflict. The container name is already in use", Conflict),
        (400, "invalid reference format", InvalidInput),
        (500, "something else", EngineError),
    ],
)
def test_engine_errors_map_to_the_service_errors(status: int, message: str, expected: type) -> None:
    error = map_engine_error(status, message)
    assert type(error) is expected


@pytest.mark.parametrize(
    ("repo", "registry"),
    [
        ("nginx", DOCKER_HUB),
        ("team/app", DOCKER_HUB),
        ("127.0.0.1:5000/team/app", "127.0.0.1:5000"),
        ("localhost/app", "localhost"),
        ("registry.example.com/app", "registry.example.com"),
    ],
)
def test_registry_of_follows_dockers_rule(repo: str, registry: str) -> None:
    assert registry_of(repo) == registry


# --- build output ----------------------------------------------------------------------------


def test_build_output_tracks_steps_image_and_tail() -> None:
    output = BuildOutput()
    lines = output.feed({"stream": "Step 2/5 : run echo hi\n ---> Running in abc\n"})
    assert [line["text"] for line in lines] == ["Step 2/5 : run echo hi", " ---> Running in abc"]
    assert lines[1]["step_index"] == 2 and lines[1]["step_total"] == 5 and lines[1]["instruction"] == "RUN"
    # Each line carries its own chunk, so joining chunk.stream gives the output exactly once.
    assert (
        "".join(line["chunk"]["stream"] for line in lines) == "Step 2/5 : run echo hi\n ---> Running in abc\n"
    )
    assert output.feed({"aux": {"ID": "sha256:feed"}}) == [] and output.image_id == "sha256:feed"
    status = output.feed({"status": "Downloading", "progress": "[==>  ]"})
    assert status[0]["stream"] == "status" and status[0]["text"] == "Downloading [==>  ]"
    assert output.feed({"unknown": 1}) == []
    for n in range(LOG_TAIL + 5):
        output.feed({"stream": f"line {n}\n"})
    assert len(output.tail) == LOG_TAIL and output.tail[-1] == f"line {LOG_TAIL + 4}"


# --- update-port's re-creation body ----------------------------------------------------------


def test_recreate_config_moves_one_port_and_keeps_the_rest() -> None:
    old = ContainerInfo(
        {
            "Id": "x",
            "Config": {
                "Image": "web:1",
                "Env": ["A=1"],
                "Labels": {"k": "v"},
                "ExposedPorts": {"80/tcp": {}},
            },
            "HostConfig": {
                "Memory": 64 << 20,
                "PortBindings": {
                    "80/tcp": [{"HostIp": "", "HostPort": "8001"}],
                    "81/tcp": [{"HostPort": "8002"}],
                },
                "Binds": [],
                "Privileged": None,
            },
        }
    )
    body = recreate_config(old, port_key="80/tcp", new_port=9001, host_ip="127.0.0.1")
    assert body["Image"] == "web:1" and body["Env"] == ["A=1"] and body["Labels"] == {"k": "v"}
    host = body["HostConfig"]
    assert host["Memory"] == 64 << 20
    assert host["PortBindings"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "9001"}]
    assert host["PortBindings"]["81/tcp"] == [{"HostPort": "8002"}]
    assert "Binds" not in host and "Privileged" not in host  # empty values are not carried over
    assert old.host_config["PortBindings"]["80/tcp"][0]["HostPort"] == "8001"  # the original is untouched


# --- the streaming tar reader ----------------------------------------------------------------


def _tar(fmt: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        long_name = "d/" + "n" * 150 + ".txt"
        for name, payload in (("a.txt", b"alpha"), (long_name, b"x" * 1500)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            info.mode = 0o640
            archive.addfile(info, io.BytesIO(payload))
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "a.txt"
        archive.addfile(link)
        folder = tarfile.TarInfo("d/")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
    return buffer.getvalue()


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("piece", [1, 7, 512, 100_000])
async def test_tar_reader_reads_members_whatever_the_pieces(fmt: int, piece: int) -> None:
    seen = []
    async for entry, reader in TarReader(_pieces(_tar(fmt), piece)).entries():
        data = b"".join([chunk async for chunk in reader.chunks()]) if entry.name == "a.txt" else b""
        seen.append(
            (entry.name, entry.type, entry.size if entry.type == "file" else 0, data, entry.link_target)
        )
    assert seen[0] == ("a.txt", "file", 5, b"alpha", None)
    assert seen[1][0] == "d/" + "n" * 150 + ".txt" and seen[1][2] == 1500  # unread data is skipped
    assert seen[2][:2] == ("link", "symlink") and seen[2][4] == "a.txt"
    assert seen[3][:2] == ("d", "directory")


async def test_a_truncated_archive_is_an_error_not_a_short_file() -> None:
    data = _tar(tarfile.PAX_FORMAT)
    cut = data[: 512 + 3]  # the first header and three bytes of "alpha"
    with pytest.raises(TarFormatError):
        async for _entry, reader in TarReader(_pieces(cut, 64)).entries():
            async for _chunk in reader.chunks():
                pass


def test_site_idents_stay_short_and_unique() -> None:
    # Short names keep their readable form (and the files already written keep their names).
    assert ident_of(Path("/x/web.conf")) == "web"
    assert ident_of(Path("/x/Web.conf")) != ident_of(Path("/x/web.conf"))
    # A long domain would make `$dm_connection_{ident}` too long for nginx's variables hash.
    long = [Path(f"/x/dmt697fa9-0fe03d.example.{tld}.conf") for tld in ("com", "org")]
    idents = [ident_of(p) for p in long]
    assert all(len(i) <= IDENT_MAX and i.isidentifier() for i in idents)
    assert idents[0] != idents[1]
    assert ident_of(long[0]) == idents[0]  # stable: the same file always gets the same names


def test_site_fronts_and_their_rules() -> None:
    network = IPv4Network("127.77.0.0/16")
    assert [front_of(i, network) for i in (0, 1, 300)] == [
        "127.77.0.1:1",
        "127.77.0.2:1",
        "127.77.1.45:1",
    ]
    with pytest.raises(Exception, match="no front address left"):
        front_of(2, IPv4Network("127.77.9.0/30"))
    assert chain_of("127.77.0.1:1") != chain_of("127.77.0.2:1") and len(chain_of("127.77.0.1:1")) <= 28
    # Only loopback in, only a loopback port out: a rule can never send traffic elsewhere.
    for bad in ("10.0.0.1:80", "127.77.0.1:http", "127.77.0.1; -j ACCEPT:80"):
        with pytest.raises(ValueError):
            _valid_front(bad)
    for bad in ("172.17.0.2:80", "127.0.0.1:0", "127.0.0.1:99999"):
        with pytest.raises(ValueError):
            _valid_target(bad)
    assert same_configuration("# a\nserver x;\n", "# b\nserver x;\n")
    assert not same_configuration("# a\nserver x;\n", "# a\nserver y;\n")


def test_a_site_header_with_a_front_round_trips(tmp_path: Path) -> None:
    paths = NginxPaths(
        binary="nginx", conf=None, prefix=None, pid_file=tmp_path / "pid", error_log=tmp_path / "e"
    )
    nginx = Nginx(paths, listen="127.0.0.1:8080", tls_listen="127.0.0.1:8443", cert_dir=None)
    site = tmp_path / "shop.conf"
    site.write_text(
        nginx.render(
            ident="shop",
            domain="shop.example.com",
            upstream=Upstream("127.0.0.1", 32768),
            app_id="shop",
            front="127.77.0.5:80",
        )
    )
    header = read_header(site)
    assert (
        header is not None
        and header.front == "127.77.0.5:80"
        and header.upstream.address == "127.0.0.1:32768"
    )
    text = site.read_text()
    assert "server 127.77.0.5:80;" in text and "keepalive 16" not in text


def test_front_networks_stay_off_the_services_addresses() -> None:
    from pydantic import ValidationError

    from docker_manager.config import Settings

    for bad in ("127.0.0.0/8", "127.0.0.0/16", "10.77.0.0/16", "127.77.0.0/31"):
        with pytest.raises(ValidationError):
            Settings(switch_front_network=bad)  # type: ignore[arg-type]
    assert str(Settings(switch_front_network="127.100.0.0/16").switch_front_network) == "127.100.0.0/16"  # type: ignore[arg-type]
    # A front outside 127.77/16 still reads back from a site header.
    assert _valid_front("127.100.0.1:1") == ("127.100.0.1", 1)
