"""Upgrading from a version that decided ownership by labels: adopt what it labelled, once.

Before the ownership record existed, the label `docker-manager.managed=true` was the record. On
the first start with the record, the labelled containers, images, volumes and networks found are
taken as this service's (a container that has host-level options as admin-only), and the fact is
noted so that it never happens again: from then on a label alone makes nothing this service's.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from docker_manager.adapters.docker import ContainerInfo, Docker
from docker_manager.db.tables import service_meta
from docker_manager.labels import APP_ID, MANAGED_FILTER, TASK_ID
from docker_manager.services.containers import ContainerPolicy
from docker_manager.services.ownership.record import Kind, Ownership

log = logging.getLogger(__name__)

ADOPTED = "labelled_objects_adopted"


async def adopt_labelled_once(
    engine: AsyncEngine, docker: Docker, ownership: Ownership, policy: ContainerPolicy
) -> int:
    async with engine.connect() as conn:
        done = await conn.scalar(sa.select(service_meta.c.value).where(service_meta.c.key == ADOPTED))
    if done is not None:
        return 0
    adopted = 0
    for item in await docker.containers.list(all=True, filters=MANAGED_FILTER):
        info = await docker.containers.info(item["Id"])
        labels = info.labels
        host_level = bool(await policy.host_level(adoption_view(info)))
        await ownership.record(
            Kind.CONTAINER,
            item["Id"],
            name=info.name,
            app_id=labels.get(APP_ID),
            task_id=labels.get(TASK_ID),
            host_level=host_level,
        )
        adopted += 1
    for image in await docker.images.list(filters=MANAGED_FILTER):
        labels = image.get("Labels") or {}
        await ownership.record(
            Kind.IMAGE, image["Id"], app_id=labels.get(APP_ID), task_id=labels.get(TASK_ID)
        )
        adopted += 1
    for volume in await docker.volumes.list(filters=MANAGED_FILTER):
        labels = volume.get("Labels") or {}
        await ownership.record(Kind.VOLUME, volume["Name"], name=volume["Name"], app_id=labels.get(APP_ID))
        adopted += 1
    for network in await docker.networks.list(filters=MANAGED_FILTER):
        labels = network.get("Labels") or {}
        await ownership.record(Kind.NETWORK, network["Id"], name=network["Name"], app_id=labels.get(APP_ID))
        adopted += 1
    async with engine.begin() as conn:
        await conn.execute(service_meta.insert().values(key=ADOPTED, value=str(adopted)))
    if adopted:
        log.warning("adopted %d labelled objects of an earlier version as this service's", adopted)
    return adopted


# The engine's own defaults in an inspect's HostConfig: values that say nothing about the host.
_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "Runtime": ("", "runc"),
    # The daemon's default depends on the host's cgroup version; nothing here ever sets it.
    "CgroupnsMode": ("", "private", "host"),
    "Isolation": ("", "default"),
    "ConsoleSize": ([0, 0],),
    "OomScoreAdj": (0,),
    "CgroupParent": ("",),
}


def adoption_view(info: ContainerInfo) -> dict[str, Any]:
    """An inspected container as a create body, for judging whether it is host-level: the whole
    HostConfig, with the engine's defaults left out; paths unmasked (`MaskedPaths: []`, as
    `--security-opt systempaths=unconfined` leaves them) count as host-level."""
    host = {
        key: value
        for key, value in info.host_config.items()
        if value not in _DEFAULTS.get(key, ()) and key not in ("MaskedPaths", "ReadonlyPaths")
    }
    for key in ("MaskedPaths", "ReadonlyPaths"):
        if info.host_config.get(key) == []:
            host[key] = "unmasked"
    return {"Labels": info.labels, "HostConfig": host}
