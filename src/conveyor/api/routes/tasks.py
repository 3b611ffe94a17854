"""Beyond the API document: a task's jobs and their logs, for people and tools."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from conveyor.api.deps import (
    MAX_ID_DIGITS,
    MAX_OFFSET_DIGITS,
    SECURED,
    TASK_ID,
    WORKFLOW_NAME,
    authorization,
    commit_json,
    container,
    error_responses,
    path_parameter,
    task_id_from_path,
    task_times,
    whole_number,
    whole_number_schema,
)
from conveyor.api.schemas import TaskDetailOut
from conveyor.domain.states import TERMINAL_JOB_STATES, JobState, public_status

router = APIRouter(prefix="/api/workflows", tags=["task detail"])


def _offset(raw: str | None) -> int:
    if raw is None:
        return 0
    return whole_number(
        raw, f"offset: {raw!r} must be a whole number of bytes", digits=MAX_OFFSET_DIGITS
    )


_JOB_ID = path_parameter("job", "the job's id", whole_number_schema(0, MAX_ID_DIGITS), 1)
_OFFSET = {
    "name": "offset",
    "in": "query",
    "required": False,
    "description": "the byte of the log to start from",
    "schema": {**whole_number_schema(0, MAX_OFFSET_DIGITS), "default": 0},
}
_LOG_HEADERS: dict[str, tuple[dict[str, Any], str]] = {
    "X-Next-Offset": ({"type": "integer"}, "the offset to ask from next"),
    "X-Log-Size": ({"type": "integer"}, "the log's size in bytes so far"),
    "X-Job-Status": ({"type": "string"}, "the job's status"),
    "X-Log-Complete": (
        {"type": "string", "enum": ["true", "false"]},
        "`true` once the job has ended and all of its log has been read",
    ),
}
_LOG_OK = {
    "description": "up to 1 MiB of the job's log",
    "content": {"text/plain": {"schema": {"type": "string"}}},
    "headers": {
        name: {"required": True, "description": text, "schema": schema}
        for name, (schema, text) in _LOG_HEADERS.items()
    },
}


@router.get(
    "/{name}/tasks/{id}",
    response_model=TaskDetailOut,
    responses=error_responses(400, 401, 403, 404, 500, 503),
    summary="A task with its commits, jobs and attempts",
    openapi_extra={"parameters": [WORKFLOW_NAME, TASK_ID], **SECURED},
)
def task_detail(request: Request) -> JSONResponse:
    c = container(request)
    principal = c.tokens.authenticate(authorization(request))
    name = request.path_params["name"]
    found = c.tasks.detail(principal, name, task_id_from_path(request.path_params["id"]))
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
    response_class=PlainTextResponse,
    responses={200: _LOG_OK, **error_responses(400, 401, 403, 404, 500, 503)},
    summary="A job's log from a byte offset; follow it by asking again from X-Next-Offset",
    openapi_extra={"parameters": [WORKFLOW_NAME, TASK_ID, _JOB_ID, _OFFSET], **SECURED},
)
def job_log(request: Request) -> Response:
    c = container(request)
    principal = c.tokens.authenticate(authorization(request))
    path = request.path_params
    name = path["name"]
    task_id = task_id_from_path(path["id"])
    job_id = whole_number(
        path["job"], f"job: {path['job']!r} is not a job id", digits=MAX_ID_DIGITS
    )
    start = _offset(request.query_params.get("offset"))
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
