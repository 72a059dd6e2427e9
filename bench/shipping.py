"""Benchmark image shipping: localrun vs `lz4 -dc | docker load && docker run`, SFTP upload vs scp.

    .venv/bin/python bench/shipping.py [--mb 1024] [--runs 3]

Builds an image holding `--mb` MiB of random data, saves it as .tar.lz4, then times:
- POST /docker/localrun until the container runs (and the service's peak memory growth),
  against `lz4 -dc FILE | docker load` followed by `docker run -d`;
- the service's SFTP upload code (docker_manager.adapters.sftp.upload; the bytes by OpenSSH's sftp, and its
  asyncssh-only path) against `scp`, to a private sshd, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from _common import ROOT, docker, ensure_base_image, row, service

sys.path.insert(0, str(ROOT))
from tests.harness import sshd

from docker_manager.adapters.sftp import SftpTarget, upload


def make_artefact(folder: Path, mb: int, tag: str) -> Path:
    context = folder / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {ensure_base_image()}\nRUN head -c {mb * 1024 * 1024} /dev/urandom > /blob\n"
        'CMD ["sleep", "3600"]\n'
    )
    print(f"building a {mb} MiB image and saving it as .tar.lz4 ...")
    docker("build", "-q", "-t", tag, str(context))
    artefact = folder / "upload" / "bench-task" / "image.tar.lz4"
    artefact.parent.mkdir(parents=True)
    subprocess.run(f"docker save {tag} | lz4 -q -z -c > {artefact}", shell=True, check=True)  # noqa: S602
    docker("rmi", tag)
    return artefact


def bench_localrun(artefact: Path, data_dir: Path, tag: str, runs: int) -> None:
    """Alternating: the shell pipe, then the service, `runs` times each (medians compared)."""
    ours, baseline, growth = [], [], []
    with service(DM_DATA_DIR=str(data_dir)) as svc:
        for i in range(runs):
            name = f"dmbench-cli-{i}"
            started = time.perf_counter()
            pipe = f"lz4 -dc {artefact} | docker load -q"  # the baseline is a shell pipe
            subprocess.run(pipe, shell=True, check=True, capture_output=True)  # noqa: S602
            docker("run", "-d", "--name", name, tag)
            baseline.append(time.perf_counter() - started)
            docker("rm", "-f", name)
            docker("rmi", tag)

            before = svc.rss_kib()
            started = time.perf_counter()
            response = httpx2.post(
                f"{svc.url}/docker/localrun",
                json={
                    "lz4_path": str(artefact),
                    "task_id": "bench-task",
                    "name": f"dmbench-api-{i}",
                    "healthcheck_time": 3600,
                },
                headers=svc.headers,
                timeout=600,
            )
            response.raise_for_status()
            ours.append(time.perf_counter() - started)
            growth.append((svc.peak_rss_kib() - before) / 1024)
            docker("rm", "-f", f"dmbench-api-{i}")
            docker("rmi", tag)
    print(
        "  runs (pipe, service): "
        + ", ".join(f"{b:.2f}/{o:.2f} s" for b, o in zip(baseline, ours, strict=True))
    )
    row(
        "localrun until running vs lz4|docker load+run",
        statistics.median(ours),
        statistics.median(baseline),
        "s",
    )
    print(f"{'':44} service peak memory growth: {max(growth):+.1f} MiB")


def bench_upload(artefact: Path, workdir: Path, runs: int) -> None:
    """scp, the service's upload (bytes by OpenSSH's sftp) and its asyncssh-only path, alternating."""
    with sshd(workdir / "sshd") as server:
        base = ["-P", str(server.port), "-i", str(server.key_file), "-o", "BatchMode=yes"]
        base += ["-o", f"UserKnownHostsFile={server.known_hosts}"]
        target_dir = workdir / "received"
        target_dir.mkdir()
        times: dict[str, list[float]] = {"scp": [], "service": [], "service, asyncssh only": []}
        for i in range(runs):
            started = time.perf_counter()
            subprocess.run(
                ["scp", "-q", *base, str(artefact), f"{server.user}@127.0.0.1:{target_dir}/scp-{i}"],
                check=True,
            )
            times["scp"].append(time.perf_counter() - started)
            for name, client in (("service", "auto"), ("service, asyncssh only", "asyncssh")):
                target = SftpTarget(
                    host="127.0.0.1",
                    port=server.port,
                    username=server.user,
                    remote_dir=str(target_dir),
                    key_file=server.key_file,
                    known_hosts=server.known_hosts,
                    client=client,  # type: ignore[arg-type]
                )
                started = time.perf_counter()
                asyncio.run(upload(target, f"{client}-{i}", [artefact]))
                times[name].append(time.perf_counter() - started)
            for received in target_dir.rglob("*"):
                if received.is_file():
                    received.unlink()  # keep the disk from filling over the runs
    size_mb = artefact.stat().st_size / (1 << 20)
    scp_s = statistics.median(times["scp"])
    for name in ("service", "service, asyncssh only"):
        ours_s = statistics.median(times[name])
        row(f"SFTP upload ({name}) vs scp", ours_s, scp_s, "s")
        print(
            f"{'':44} throughput {size_mb / ours_s:.0f} MiB/s vs scp {size_mb / scp_s:.0f} MiB/s "
            f"({scp_s / ours_s:.2f}x of scp's)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["localrun", "upload"], help="run one of the two")
    args = parser.parse_args()
    tag = f"dmbench-ship-{secrets.token_hex(3)}:latest"
    with tempfile.TemporaryDirectory(prefix="dm-bench-ship-") as tmp:
        folder = Path(tmp)
        artefact = make_artefact(folder, args.mb, tag)
        print(f"artefact: {artefact.stat().st_size / (1 << 20):.0f} MiB")
        if args.only != "upload":
            bench_localrun(artefact, folder, tag, args.runs)
        if args.only != "localrun":
            bench_upload(artefact, folder, args.runs)


if __name__ == "__main__":
    main()
