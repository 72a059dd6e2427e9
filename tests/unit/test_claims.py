"""Which images a build claims, from output a RUN step can write to (fakes for the engine and the
ownership record: the rule itself; tests/integration/test_images.py runs it against the engine)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from docker_manager.services.builds.claims import ImageClaims
from docker_manager.services.builds.output import BuildOutput
from docker_manager.services.ownership.record import Kind

STARTED = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
BEFORE = (STARTED - timedelta(hours=1)).isoformat()
DURING = (STARTED + timedelta(seconds=3)).isoformat()


def full(short: str) -> str:
    return "sha256:" + short + "0" * 52


class FakeImages:
    def __init__(self, images: dict[str, dict[str, Any]]) -> None:
        self.images = images

    async def inspect(self, ref: str) -> dict[str, Any]:
        # Like the engine: a name first (a tag spelled like an id), then an id prefix.
        if ref in self.images:
            return self.images[ref]
        for image in self.images.values():
            if image["Id"].startswith(ref):
                return image
        raise LookupError(ref)


class FakeDocker:
    def __init__(self, images: dict[str, dict[str, Any]]) -> None:
        self.images = FakeImages(images)


class FakeOwnership:
    def __init__(self) -> None:
        self.recorded: dict[str, dict[str, Any]] = {}

    def owns(self, kind: Kind, ref: str) -> bool:
        return ref in self.recorded

    async def record(self, kind: Kind, ref: str, **fields: Any) -> None:
        self.recorded[ref] = fields


def image(short: str, parent: str | None, created: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {"Id": full(short), "Parent": full(parent) if parent else "", "Created": created, "RepoTags": tags}


def output_of(lines: list[str], image_id: str | None = None) -> BuildOutput:
    output = BuildOutput()
    output.feed({"stream": "\n".join(lines) + "\n"})
    if image_id:
        output.feed({"aux": {"ID": image_id}})
    return output


async def test_only_the_steps_this_build_ran_in_its_own_chain_are_claimed() -> None:
    images = {
        full("ba5e00000000"): image("ba5e00000000", None, BEFORE, ["busybox:latest"]),
        full("5e1000000000"): image("5e1000000000", "ba5e00000000", DURING),
        full("5e2000000000"): image("5e2000000000", "5e1000000000", DURING),
        # Someone else's image, committed during the build: named by a RUN step's output.
        full("0e7000000000"): image("0e7000000000", "ba5e00000000", DURING),
    }
    output = output_of(
        [
            "Step 1/4 : FROM busybox",
            " ---> ba5e00000000",
            "Step 2/4 : RUN a",
            " ---> Running in c1",
            " ---> 5e1000000000",
            "Step 3/4 : RUN b",
            " ---> Running in c2",
            " ---> 0e7000000000",  # printed by the step
            " ---> 5e2000000000",
            "Step 4/4 : RUN false",
            " ---> Running in c3",
        ]
    )
    ownership = FakeOwnership()
    claims = ImageClaims(FakeDocker(images), ownership)  # type: ignore[arg-type]
    await claims.steps(output, STARTED, app_id="web", task_id="t1", created_by=None)
    assert set(ownership.recorded) == {full("5e1000000000"), full("5e2000000000")}


async def test_a_tag_spelled_like_an_id_and_cached_steps_are_not_claimed() -> None:
    images = {
        full("ba5e00000000"): image("ba5e00000000", None, BEFORE, ["busybox:latest"]),
        # A tag named after the id the output printed, on someone else's image.
        "sha256:5e1000000000": image("fee100000000", "ba5e00000000", DURING, ["sha256:5e1000000000"]),
        full("cac4ed000000"): image("cac4ed000000", "ba5e00000000", BEFORE),
    }
    output = output_of(
        [
            "Step 1/3 : FROM busybox",
            " ---> ba5e00000000",
            "Step 2/3 : RUN a",
            " ---> Using cache",
            " ---> cac4ed000000",
            "Step 3/3 : RUN b",
            " ---> Running in c1",
            " ---> 5e1000000000",
        ]
    )
    ownership = FakeOwnership()
    await ImageClaims(FakeDocker(images), ownership).steps(  # type: ignore[arg-type]
        output, STARTED, app_id=None, task_id="t2", created_by=None
    )
    assert ownership.recorded == {}


async def test_the_final_image_is_claimed_only_when_the_last_step_ran_here() -> None:
    images = {
        full("ba5e00000000"): image("ba5e00000000", None, BEFORE, ["busybox:latest"]),
        full("ade000000000"): image("ade000000000", "ba5e00000000", DURING),
        full("cac4ed000000"): image("cac4ed000000", "ba5e00000000", DURING),
    }
    ownership = FakeOwnership()
    claims = ImageClaims(FakeDocker(images), ownership)  # type: ignore[arg-type]
    only_from = output_of(["Step 1/1 : FROM busybox", " ---> ba5e00000000"], full("ba5e00000000"))
    assert not only_from.last_step_ran
    assert not await claims.final_image(
        only_from, STARTED, tag="t", app_id=None, task_id="a", created_by=None
    )
    cached = output_of(
        [
            "Step 1/2 : FROM busybox",
            " ---> ba5e00000000",
            "Step 2/2 : RUN x",
            " ---> Using cache",
            " ---> cac4ed000000",
        ],
        full("cac4ed000000"),
    )
    assert not await claims.final_image(cached, STARTED, tag="t", app_id=None, task_id="b", created_by=None)
    ran = output_of(
        [
            "Step 1/2 : FROM busybox",
            " ---> ba5e00000000",
            "Step 2/2 : RUN x",
            " ---> Running in c",
            " ---> ade000000000",
        ],
        full("ade000000000"),
    )
    assert await claims.final_image(ran, STARTED, tag="t", app_id=None, task_id="c", created_by=None)
    assert set(ownership.recorded) == {full("ade000000000")}
    # Once it is the service's, a fully cached rebuild ending on it keeps it so.
    again = output_of(
        [
            "Step 1/2 : FROM busybox",
            " ---> ba5e00000000",
            "Step 2/2 : RUN x",
            " ---> Using cache",
            " ---> ade000000000",
        ],
        full("ade000000000"),
    )
    assert await claims.final_image(again, STARTED, tag="t", app_id=None, task_id="d", created_by=None)
