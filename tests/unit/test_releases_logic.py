"""Engine-free rules of releases, rollback choice, sealing, disk figures and disk-full errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import lz4.frame
import pytest

from docker_manager.adapters.docker.types import ContainerInfo
from docker_manager.errors import Conflict, DiskFull, EngineError, NotFound
from docker_manager.services.host.disk import engine_usage
from docker_manager.services.releases.engine_view import EngineView
from docker_manager.services.releases.rules import check_runnable, choose_target, keep_host_ports
from docker_manager.services.releases.store import Release
from docker_manager.util.clock import utcnow
from docker_manager.util.lz4file import GROWTH_ESTIMATE, decompressed_size
from docker_manager.util.sealing import Sealer, SealError


def release(
    number: int, *, container: str | None = None, image: str = "sha256:a", pruned: bool = False
) -> Release:
    return Release(
        app_id="shop",
        number=number,
        source="localrun",
        image_id=image,
        config={},
        container_id=container,
        pruned_at=utcnow() if pruned else None,
    )


def test_live_is_the_newest_running_release_and_gone_follows_the_image() -> None:
    items = [
        release(3, container="c3"),
        release(2, container="c2"),
        release(1, container="c1", image="sha256:old"),
    ]
    engine = EngineView(states={"c3": "exited", "c2": "running", "c1": "running"}, images={"sha256:a"})
    live = engine.live_of(items)
    assert live is not None and live.number == 2
    assert [engine.status_of(r, live.number) for r in items] == ["retained", "live", "gone"]
    assert engine.status_of(release(4, container="c2", pruned=True), None) == "gone"
    assert EngineView(states={}, images=set()).live_of(items) is None


def test_the_default_rollback_target_is_the_newest_release_before_the_live_one() -> None:
    items = [release(4), release(3), release(2), release(1)]
    assert choose_target(items, None, items[1]).number == 2
    assert choose_target(items, 1, items[0]).number == 1
    with pytest.raises(Conflict, match="already live"):
        choose_target(items, 3, items[1])
    with pytest.raises(Conflict, match="nothing before"):
        choose_target(items, None, items[3])
    with pytest.raises(Conflict, match="name the release"):
        choose_target(items, None, None)
    with pytest.raises(NotFound):
        choose_target(items, 9, None)


def test_a_release_without_its_image_cannot_run_again() -> None:
    engine = EngineView(states={}, images={"sha256:a"})
    check_runnable(release(1), engine)
    with pytest.raises(Conflict) as caught:
        check_runnable(release(2, image="sha256:gone"), engine)
    assert caught.value.extra["missing"] == {"image_id": "sha256:gone", "tag": None}
    with pytest.raises(Conflict, match="pruned"):
        check_runnable(release(3, pruned=True), engine)


def test_in_place_rollback_takes_the_live_containers_host_ports() -> None:
    config = {"HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8001"}]}}}
    live = ContainerInfo(
        {"Id": "x", "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9005"}]}}}
    )
    keep_host_ports(config, live)
    assert config["HostConfig"]["PortBindings"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "9005"}]


def test_sealed_values_open_only_with_their_key(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "release-key"
    sealer = Sealer.from_key_file(key_file)
    sealed = sealer.seal(["A=1", "SECRET=hunter2"])
    assert "hunter2" not in sealed
    assert Sealer.from_key_file(key_file).open(sealed) == ["A=1", "SECRET=hunter2"]  # the same key, reread
    assert key_file.stat().st_mode & 0o777 == 0o600
    other = Sealer.from_key_file(tmp_path / "other-key")
    with pytest.raises(SealError):
        other.open(sealed)
    with pytest.raises(SealError):
        sealer.open(sealed[:-4] + "AAAA")


def test_the_key_file_is_never_read_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("x")
    (tmp_path / "release-key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        Sealer.from_key_file(tmp_path / "release-key")


def test_engine_usage_is_computed_as_the_docker_cli_does() -> None:
    df = {
        "LayersSize": 1000,
        "Images": [
            {"Size": 600, "SharedSize": 100, "Containers": 1},
            {"Size": 400, "SharedSize": 100, "Containers": 0},
        ],
        "Containers": [{"SizeRw": 10, "State": "running"}, {"SizeRw": 5, "State": "exited"}],
        "Volumes": [{"UsageData": {"Size": 50, "RefCount": 1}}, {"UsageData": {"Size": 7, "RefCount": 0}}],
        "BuildCache": [
            {"Size": 30, "InUse": False, "Shared": False},
            {"Size": 9, "InUse": True, "Shared": False},
        ],
    }
    usage = engine_usage(df)
    assert (usage["images"].count, usage["images"].size_bytes, usage["images"].reclaimable_bytes) == (
        2,
        1000,
        500,
    )
    assert (usage["containers"].size_bytes, usage["containers"].reclaimable_bytes) == (15, 5)
    assert (usage["volumes"].size_bytes, usage["volumes"].reclaimable_bytes) == (57, 7)
    assert (usage["build_cache"].size_bytes, usage["build_cache"].reclaimable_bytes) == (39, 30)


def test_decompressed_size_reads_the_frame_or_estimates(tmp_path: Path) -> None:
    data = b"x" * 100_000
    with_size = tmp_path / "a.lz4"
    with_size.write_bytes(lz4.frame.compress(data, store_size=True))
    assert decompressed_size(with_size) == len(data)
    # A frame that claims less than the estimate does not lower it (the claim is the uploader's).
    liar = tmp_path / "c.lz4"
    frame = bytearray(lz4.frame.compress(os.urandom(50_000), store_size=True))
    frame[6:14] = (1).to_bytes(8, "little")
    liar.write_bytes(bytes(frame))
    assert decompressed_size(liar) == liar.stat().st_size * GROWTH_ESTIMATE
    without = tmp_path / "b.lz4"
    without.write_bytes(lz4.frame.compress(data, store_size=False))
    assert decompressed_size(without) == without.stat().st_size * GROWTH_ESTIMATE


def test_full_disks_are_recognised_whoever_reports_them() -> None:
    assert DiskFull.from_error(OSError(errno.ENOSPC, "No space left on device")) is not None
    engine = DiskFull.from_error(EngineError("write /var/lib/docker/x: no space left on device"))
    assert engine is not None and engine.extra["reason"] == "disk_full"
    assert DiskFull.from_error(OSError(errno.EACCES, "Permission denied")) is None
    assert DiskFull.from_error(EngineError("something else")) is None
