"""The saturated status bench's baseline: a bare FastAPI app with one route that checks a bearer
token and answers fixed bytes (the service's own answer for the polled task). What the framework
alone costs on this machine, served by the same uvicorn (one worker, no access log)."""

from __future__ import annotations

import os

from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import Response

BODY = os.environ["BARE_STATUS_BODY"].encode()
TOKEN = os.environ["BARE_STATUS_TOKEN"]
app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/tasks/status/{task_id}")
async def task_status(task_id: str, authorization: str = Header("")) -> Response:
    if authorization != f"Bearer {TOKEN}":
        raise HTTPException(401)
    return Response(BODY, media_type="application/json")
