"""A small FastAPI job service with an API unlike the reference one, in two variants.

``POST /jobs`` starts a job of ``STEPS`` steps and returns ``{"job": {"id", "steps"}}``;
``GET /jobs/{id}`` returns ``{"state", "done_steps", "steps"}`` with state ``running``,
``done`` or ``error``, and 404 for an unknown job; ``GET /jobs/{id}/output`` returns
``{"items": [...]}`` once the job is done, 409 while it runs, and 404 for an unknown job.
A user is named by the bearer token ``token-<user>``.

``JOBS_APP_STORE=memory`` (the default) keeps jobs in a dict of the worker that started
them: the bug the harness catches. ``JOBS_APP_STORE=redis`` keeps them in Redis at
``REDIS_URL``, with a 600 s TTL refreshed on every write: the fix.

``JOBS_APP_NAME_WORKER=1`` makes every response name its worker in ``X-Worker-Id``, as
services that log or expose their worker do; the harness can then route requests to a
chosen worker even when it did not start the app.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

import redis.asyncio as redis
from fastapi import FastAPI, Header, HTTPException, Response

STEPS = 5
STEP_S = 0.05
RETENTION_S = 600

app = FastAPI()


@app.middleware("http")
async def name_worker(request: Any, call_next: Any) -> Any:
    response = await call_next(request)
    if os.environ.get("JOBS_APP_NAME_WORKER") == "1":
        response.headers["X-Worker-Id"] = str(os.getpid())
    return response

_memory: dict[str, dict[str, Any]] = {}
_redis: redis.Redis | None = None
_tasks: set[asyncio.Task[None]] = set()


def _use_redis() -> bool:
    return os.environ.get("JOBS_APP_STORE", "memory") == "redis"


def _store() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    return _redis


def _user(authorization: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer token-"):
        raise HTTPException(401, "missing or invalid bearer token")
    return authorization.removeprefix("Bearer token-")


async def _save(job_id: str, job: dict[str, Any]) -> None:
    if not _use_redis():
        _memory[job_id] = job
        return
    async with _store().pipeline(transaction=True) as pipe:
        pipe.set(f"jobs:{job_id}", json.dumps(job), ex=RETENTION_S)
        await pipe.execute()


async def _load(job_id: str) -> dict[str, Any] | None:
    if not _use_redis():
        return _memory.get(job_id)
    raw = await _store().get(f"jobs:{job_id}")
    return None if raw is None else json.loads(raw)  # type: ignore[no-any-return]


async def _work(job_id: str, job: dict[str, Any]) -> None:
    for step in range(STEPS):
        await asyncio.sleep(STEP_S)
        job = {**job, "done_steps": step + 1}
        if step + 1 == STEPS:
            job["state"] = "done"
            job["items"] = [{"step": index, "value": index * index} for index in range(STEPS)]
        await _save(job_id, job)


@app.post("/jobs", status_code=202)
async def start_job(authorization: str | None = Header(default=None)) -> dict[str, Any]:
    user = _user(authorization)
    job_id = uuid.uuid4().hex
    job = {"user": user, "state": "running", "done_steps": 0, "steps": STEPS}
    await _save(job_id, job)
    task = asyncio.get_running_loop().create_task(_work(job_id, job))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return {"job": {"id": job_id, "steps": STEPS}}


async def _owned(job_id: str, authorization: str | None) -> dict[str, Any]:
    user = _user(authorization)
    job = await _load(job_id)
    if job is None or job["user"] != user:
        raise HTTPException(404, "no such job")
    return job


@app.get("/jobs/{job_id}")
async def job_status(job_id: str,
                     authorization: str | None = Header(default=None)) -> dict[str, Any]:
    job = await _owned(job_id, authorization)
    return {"state": job["state"], "done_steps": job["done_steps"], "steps": job["steps"]}


@app.get("/jobs/{job_id}/output")
async def job_output(job_id: str, response: Response,
                     authorization: str | None = Header(default=None)) -> dict[str, Any]:
    job = await _owned(job_id, authorization)
    if job["state"] != "done":
        response.status_code = 409
        return {"state": job["state"]}
    return {"items": job["items"]}
