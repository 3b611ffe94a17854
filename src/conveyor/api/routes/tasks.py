"""Beyond the API document: a task's jobs and their logs, for people and tools."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from conveyor.api.deps import (
    ERROR_RESPONSES,
    Authorization,
    commit_json,
    container,
    task_id_from_path,
    task_times,
    whole_number,
)
from conveyor.api.schemas import TaskDetailOut
from conveyor.domain.states import TERMINAL_JOB_STATES, JobState, public_status

router = APIRouter(prefix="/api/workflows", tags=["task detail"])


def _offset(raw: str | None) -> int:
    if raw is None:
        return 0
    return whole_number(raw, f"offset: {raw!r} must be a whole number of bytes", digits=15)


@router.get(
    "/{name}/tasks/{id}",
    response_model=TaskDetailOut,
    responses=ERROR_RESPONSES,
    summary="A task with its commits, jobs and attempts",
)
def task_detail(
    request: Request, name: str, id: str, authorization: Authorization = None
) -> JSONResponse:
    c = container(request)
    principal = c.tokens.authenticate(authorization)
    found = c.tasks.detail(principal, name, task_id_from_path(id))
    task = found.task
    base = f"/api/workflows/{name}/tasks/{task.task_id}"
    body: dict[str, Any] = {
        "workflow_name": task.workflow_name,
        "task_id": task.task_id,
        "env_name": task.env_name,
        "status": public_status(task.state).value,
        "attempt": task.attempt,
        "created_by": found.created_by,
        **task_times(task),
        "url": f"{c.config.public_url}/workflows/{task.workflow_name}/tasks/{task.task_id}",
        "commits": [commit_json(m) for m in found.commits],
        "jobs": [
            {
                "id": j.id,
                "attempt": j.attempt,
                "stage": j.stage,
                "service": j.service,
                "status": j.state,
                "start_time": j.start_time,
                "end_time": j.end_time,
                "exit_code": j.exit_code,
                "detail": j.detail,
                "log_url": f"{base}/jobs/{j.id}/log",
            }
            for j in found.jobs
        ],
        "attempts": [
            {
                "number": a.number,
                "requested_by": a.requested_by,
                "create_time": a.create_time,
                "start_time": a.start_time,
                "end_time": a.end_time,
            }
            for a in found.attempts
        ],
    }
    return JSONResponse(body)


@router.get(
    "/{name}/tasks/{id}/jobs/{job}/log",
    responses={**ERROR_RESPONSES, 200: {"content": {"text/plain": {}}, "description": "log bytes"}},
    summary="A job's log from a byte offset; follow it by asking again from X-Next-Offset",
)
def job_log(
    request: Request,
    name: str,
    id: str,
    job: str,
    authorization: Authorization = None,
    offset: str | None = None,
) -> Response:
    c = container(request)
    principal = c.tokens.authenticate(authorization)
    task_id = task_id_from_path(id)
    job_id = whole_number(job, f"job: {job!r} is not a job id")
    start = _offset(offset)
    piece = c.tasks.job_log(principal, name, task_id, job_id, start)
    done = JobState(piece.job.state) in TERMINAL_JOB_STATES
    return Response(
        content=piece.data,
        media_type="text/plain; charset=utf-8",
        headers={
            "X-Next-Offset": str(piece.next_offset),
            "X-Log-Size": str(piece.size),
            "X-Job-Status": piece.job.state,
            # Complete: the job has ended and everything it wrote has been read.
            "X-Log-Complete": "true" if done and piece.next_offset >= piece.size else "false",
        },
    )
