"""The html-site pipeline: `/pipeline/html-site` and `/pipeline/html-site/start` (operate)."""

from __future__ import annotations

from fastapi import APIRouter

from docker_manager.api.deps import OperateAccess, PipelineDep
from docker_manager.schemas.pipelines import PipelineRequest, PipelineStarted, PipelineSummary
from docker_manager.services.pipelines.service import PipelinePlan, PipelineService

router = APIRouter(tags=["commands"])


def _plan(body: PipelineRequest, pipeline: PipelineService) -> PipelinePlan:
    return pipeline.plan(
        repo_url=body.repo_url,
        dockerhub_repo=body.dockerhub_repo,
        tag=body.tag,
        host_port=body.host_port,
        username=body.dockerhub_username,
        password=body.dockerhub_password.get_secret_value() if body.dockerhub_password else None,
        task_id=body.task_id,
    )


@router.post("/pipeline/html-site", response_model=PipelineSummary)
async def html_site(body: PipelineRequest, pipeline: PipelineDep, who: OperateAccess) -> PipelineSummary:
    """Clone → build → login → push → pull → run → probe, waiting for the end; returns the summary."""
    return await pipeline.run(_plan(body, pipeline), who)


@router.post("/pipeline/html-site/start", response_model=PipelineStarted)
async def html_site_start(
    body: PipelineRequest, pipeline: PipelineDep, who: OperateAccess
) -> PipelineStarted:
    """The same pipeline as a task: `{task_id, status: "started"}` at once; follow `/tasks/...`."""
    record = await pipeline.start(_plan(body, pipeline), who, wait=False)
    return PipelineStarted(task_id=record.id)
