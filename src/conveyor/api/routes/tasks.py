"""Beyond the API document: a task's jobs and their logs, for people and tools."""

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from conveyor.api.deps import (
    MAX_ID_DIGITS,
    MAX_OFFSET_DIGITS,
    SECURED,
    TASK_ID,
    WORKFLOW_NAME,
    authenticate,
    authorization,
    commit_json,
    container,
    error_responses,
    path_parameter,
    run_read,
    task_id_from_path,
    task_times,
    whole_number,
    whole_number_schema,
)
from conveyor.api.links import commit_links
from conveyor.api.schemas import TaskDetailOut, TaskListOut, WorkflowDetailOut, WorkflowOut
from conveyor.domain.errors import InvalidParam
from conveyor.domain.principals import Principal
from conveyor.domain.states import (
    RESTARTABLE_TASK_STATES,
    TERMINAL_JOB_STATES,
    TERMINAL_TASK_STATES,
    JobState,
    TaskState,
    public_status,
)
from conveyor.domain.tasks import Task
from conveyor.domain.views import TaskDetail, TaskWithCommits
from conveyor.services.tasks import LOG_CHUNK

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
_BEFORE = {
    "name": "before",
    "in": "query",
    "required": False,
    "description": "instead of `offset`: the piece that ends at this byte (`end`: the "
    "log's end) and starts at a line's start, up to 1 MiB; its first byte's offset is "
    "X-Log-Start, its first line's number X-Log-Line. A page shows a long log's tail "
    "first this way, and reads backwards on demand",
    "schema": {"oneOf": [whole_number_schema(0, MAX_OFFSET_DIGITS), {"const": "end"}]},
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "at most this many bytes (at most 1 MiB, the default)",
    "schema": {**whole_number_schema(1, 7), "maximum": LOG_CHUNK, "default": LOG_CHUNK},
}
WAIT_MAX_S = 60
WAIT_REREAD_S = 5.0
_WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "hold the answer until the task has ended, at most this many seconds "
    "(0 to 60): a script learns of the end when it happens, without polling. The answer "
    "is the task as it is then, ended or not",
    "schema": {**whole_number_schema(0, 2), "maximum": WAIT_MAX_S, "default": 0},
}
_LOG_HEADERS: dict[str, tuple[dict[str, Any], str]] = {
    "X-Next-Offset": ({"type": "integer"}, "the offset to ask from next"),
    "X-Log-Size": ({"type": "integer"}, "the log's size in bytes so far"),
    "X-Job-Status": ({"type": "string"}, "the job's status"),
    "X-Log-Complete": (
        {"type": "string", "enum": ["true", "false"]},
        "`true` once the job has ended and all of its log has been read",
    ),
    "X-Log-Start": ({"type": "integer"}, "the offset of the piece's first byte"),
}
_LOG_OK = {
    "description": "up to 1 MiB of the job's log",
    "content": {"text/plain": {"schema": {"type": "string"}}},
    "headers": {
        **{
            name: {"required": True, "description": text, "schema": schema}
            for name, (schema, text) in _LOG_HEADERS.items()
        },
        "X-Log-Line": {
            "required": False,
            "description": "with `before`: the number (from 1) of the piece's first line",
            "schema": {"type": "integer"},
        },
    },
}


def _list_item(found: TaskWithCommits, public_url: str) -> dict[str, Any]:
    task: Task = found.task
    return {
        "task_id": task.task_id,
        "url": f"{public_url}/workflows/{task.workflow_name}/tasks/{task.task_id}",
        "status": public_status(task.state).value,
        "attempt": task.attempt,
        **task_times(task),
        "workflow_name": task.workflow_name,
        "env_name": task.env_name,
        "repos": [commit_json(m) for m in found.matches],
    }


@router.get(
    "",
    response_model=list[WorkflowOut],
    responses=error_responses(401, 500, 503),
    summary="The workflows the token may view, each with its newest task",
    openapi_extra=SECURED,
)
def list_workflows(request: Request) -> JSONResponse:
    c = container(request)
    principal = authenticate(request)
    out = []
    for summary in c.tasks.workflows(principal):
        wf = c.config.workflows[summary.name]
        latest = summary.latest
        out.append(
            {
                "name": summary.name,
                "env": wf.env,
                "envs": wf.envs,
                "services": wf.services,
                "parallel": wf.parallel,
                "latest": _list_item(TaskWithCommits(latest, ()), c.config.public_url)
                if latest is not None
                else None,
                "running": summary.running,
                "waiting": summary.waiting,
                "may_create": c.tasks.may(principal, "task:create", summary.name),
            }
        )
    return JSONResponse(out)


@router.get(
    "/{name}",
    response_model=WorkflowDetailOut,
    responses=error_responses(400, 401, 403, 500, 503),
    summary="A workflow: what a task of it may build, with which variables",
    openapi_extra={"parameters": [WORKFLOW_NAME], **SECURED},
)
def workflow_detail(request: Request) -> JSONResponse:
    c = container(request)
    principal = authenticate(request)
    name = request.path_params["name"]
    wf = c.tasks.workflow(principal, name)
    services = []
    for service_name in wf.services:
        build = c.config.services[service_name].build
        repos = [
            {"name": r, "default_branch": c.config.repos[r].default_branch} for r in build.repos
        ]
        services.append({"name": service_name, "repos": repos, "variables": build.variables})
    return JSONResponse(
        {
            "name": name,
            "env": wf.env,
            "envs": wf.envs,
            "parallel": wf.parallel,
            "services": services,
            "may_create": c.tasks.may(principal, "task:create", name),
        }
    )


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_LIST_PARAMETERS = [
    WORKFLOW_NAME,
    _query("limit", "at most this many", {**whole_number_schema(1, 3), "default": 50}),
    _query("before", "only tasks with a smaller id: the last page's next_before",
           whole_number_schema(1, MAX_ID_DIGITS)),
    _query("status", "created, running, passed, failed, timeout or cancelled",
           {"type": "string", "enum": ["created", "running", "passed", "failed", "timeout",
                                       "cancelled"]}),
    _query("branch", "only tasks that build this branch", {"type": "string", "maxLength": 255}),
    _query("commit", "only tasks that build this commit (or an 8+ hex prefix)",
           {"type": "string", "minLength": 8, "maxLength": 40}),
]  # fmt: skip


@router.get(
    "/{name}/tasks",
    response_model=TaskListOut,
    responses=error_responses(400, 401, 403, 500, 503),
    summary="A workflow's tasks, newest first, a page at a time, filtered",
    openapi_extra={"parameters": _LIST_PARAMETERS, **SECURED},
)
def list_tasks(request: Request) -> JSONResponse:
    c = container(request)
    principal = authenticate(request)
    query = request.query_params
    raw_limit = query.get("limit", "50")
    limit = whole_number(raw_limit, f"limit: {raw_limit!r} must be a whole number", digits=3)
    before = None
    if "before" in query:
        before = whole_number(
            query["before"], f"before: {query['before']!r} is not a task id",
            positive=True, digits=MAX_ID_DIGITS,
        )  # fmt: skip
    found = c.tasks.tasks_of(
        principal,
        request.path_params["name"],
        limit=limit,
        before=before,
        status=query.get("status"),
        branch=query.get("branch"),
        commit=query.get("commit"),
    )
    next_before = found[-1].task.task_id if len(found) == limit else None
    return JSONResponse(
        {"tasks": [_list_item(f, c.config.public_url) for f in found], "next_before": next_before}
    )


@router.get(
    "/{name}/tasks/{id}",
    response_model=TaskDetailOut,
    responses=error_responses(400, 401, 403, 404, 500, 503),
    summary="A task with its commits, jobs and attempts",
    openapi_extra={"parameters": [WORKFLOW_NAME, TASK_ID, _WAIT], **SECURED},
)
async def task_detail(request: Request) -> JSONResponse:
    ends = container(request).task_ends
    since = ends.sequence()  # an end after this is one the first read may have missed
    body, done, wait_s = await _read_detail(request)
    if done or wait_s == 0:
        return JSONResponse(body)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    with ends.watching(body["workflow_name"], body["task_id"], since) as ended:
        while ended is not None and not done and (left := deadline - loop.time()) > 0:
            # Woken by the end; or re-read now and then, for an end this process was not
            # told of (another server on the same database).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), min(left, WAIT_REREAD_S))
            if ends.stopping or await request.is_disconnected():
                break
            ended.clear()  # a restart may follow the end: wait for the next one then
            body, done, _ = await _read_detail(request)
    return JSONResponse(body)


def _wait_seconds(raw: str | None) -> float:
    if raw is None:
        return 0
    problem = f"wait: {raw!r} must be a whole number of seconds from 0 to {WAIT_MAX_S}"
    seconds = whole_number(raw, problem, digits=2)
    if seconds > WAIT_MAX_S:
        raise InvalidParam(problem)
    return seconds


async def _read_detail(request: Request) -> tuple[dict[str, Any], bool, float]:
    """The task's detail, whether it has ended, and how long the client would wait: on
    PostgreSQL for a token, read on the event loop (StatusReads, ADR 0004)."""
    reads = container(request).status_reads
    header = authorization(request)
    if reads is None or header is None:
        return await run_read(request, _task_detail)
    principal = await reads.principal(header)
    wait_s, name, task_id = _detail_params(request)
    return _detail_body(request, principal, await reads.detail(principal, name, task_id), wait_s)


def _detail_params(request: Request) -> tuple[float, str, int]:
    """How long the client would wait, the workflow and the task id: read after the
    caller is authenticated, as their errors are told only to one who is."""
    wait_s = _wait_seconds(request.query_params.get("wait"))
    return wait_s, request.path_params["name"], task_id_from_path(request.path_params["id"])


def _task_detail(request: Request) -> tuple[dict[str, Any], bool, float]:
    principal = authenticate(request)
    wait_s, name, task_id = _detail_params(request)
    found = container(request).tasks.detail(principal, name, task_id)
    return _detail_body(request, principal, found, wait_s)


def _detail_body(
    request: Request, principal: Principal, found: TaskDetail, wait_s: float
) -> tuple[dict[str, Any], bool, float]:
    c = container(request)
    name = found.task.workflow_name
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
        "commits": [{**commit_json(m), **commit_links(c.config, m)} for m in found.commits],
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
                "status": public_status(TaskState(a.state)).value if a.state else None,
            }
            for a in found.attempts
        ],
        "may_cancel": task.state in (TaskState.QUEUED, TaskState.RUNNING)
        and c.tasks.may(principal, "task:cancel", name),
        "may_restart": task.state in RESTARTABLE_TASK_STATES
        and c.tasks.may(principal, "task:restart", name),
        "server_time": int(time.time()),
    }
    return body, task.state in TERMINAL_TASK_STATES, wait_s


@router.get(
    "/{name}/tasks/{id}/jobs/{job}/log/raw",
    response_class=PlainTextResponse,
    responses={
        200: {"description": "the whole log, as a file", "content": {"text/plain": {}}},
        **error_responses(400, 401, 403, 404, 500, 503),
    },
    summary="A job's whole log so far, as a download",
    openapi_extra={"parameters": [WORKFLOW_NAME, TASK_ID, _JOB_ID], **SECURED},
)
def job_log_raw(request: Request) -> Response:
    c = container(request)
    principal = authenticate(request)
    path = request.path_params
    name, task_id, job_id = path["name"], task_id_from_path(path["id"]), _job_id(path["job"])
    first = c.tasks.job_log(principal, name, task_id, job_id, 0)

    def pieces() -> Iterator[bytes]:
        piece = first
        while True:
            yield piece.data
            if piece.next_offset >= piece.size or not piece.data:
                return
            piece = c.tasks.job_log(principal, name, task_id, job_id, piece.next_offset)

    job = first.job
    filename = f"{name}-{task_id}-{job.stage}-{job.service}-{job.attempt}.log"
    # Names come from the config and may hold any character: a plain ASCII name for
    # every browser, the exact one for those that read RFC 6266's filename*.
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return StreamingResponse(
        pieces(),
        media_type="text/plain; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{plain}"; '
            f"filename*=UTF-8''{quote(filename, safe='')}",
            "X-Log-Size": str(first.size),
            **_AS_TEXT,
        },
    )


# A log is text anyone who pushes can write: never sniffed as HTML, never run as a page.
_AS_TEXT = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


def _job_id(raw: str) -> int:
    return whole_number(raw, f"job: {raw!r} is not a job id", digits=MAX_ID_DIGITS)


@router.get(
    "/{name}/tasks/{id}/jobs/{job}/log",
    response_class=PlainTextResponse,
    responses={200: _LOG_OK, **error_responses(400, 401, 403, 404, 500, 503)},
    summary="A job's log from a byte offset; follow it by asking again from X-Next-Offset",
    openapi_extra={
        "parameters": [WORKFLOW_NAME, TASK_ID, _JOB_ID, _OFFSET, _BEFORE, _LIMIT],
        **SECURED,
    },
)
def job_log(request: Request) -> Response:
    c = container(request)
    principal = authenticate(request)
    path = request.path_params
    name = path["name"]
    task_id = task_id_from_path(path["id"])
    job_id = _job_id(path["job"])
    query = request.query_params
    limit = LOG_CHUNK
    if "limit" in query:
        limit = whole_number(
            query["limit"], f"limit: {query['limit']!r} must be a whole number of bytes",
            positive=True, digits=7,
        )  # fmt: skip
        if limit > LOG_CHUNK:
            raise InvalidParam(f"limit: {limit} is more than {LOG_CHUNK} bytes")
    if "before" in query:
        if "offset" in query:
            raise InvalidParam("before: give either offset or before, not both")
        raw = query["before"]
        before = None if raw == "end" else whole_number(
            raw, f"before: {raw!r} must be a whole number of bytes or 'end'",
            digits=MAX_OFFSET_DIGITS,
        )  # fmt: skip
        piece = c.tasks.job_log_before(principal, name, task_id, job_id, before, limit)
    else:
        start = _offset(query.get("offset"))
        piece = c.tasks.job_log(principal, name, task_id, job_id, start, limit)
    done = JobState(piece.job.state) in TERMINAL_JOB_STATES
    headers = {
        "X-Next-Offset": str(piece.next_offset),
        "X-Log-Size": str(piece.size),
        "X-Job-Status": piece.job.state,
        # Complete: the job has ended and everything it wrote has been read.
        "X-Log-Complete": "true" if done and piece.next_offset >= piece.size else "false",
        "X-Log-Start": str(piece.start),
    }
    if piece.first_line is not None:
        headers["X-Log-Line"] = str(piece.first_line)
    headers.update(_AS_TEXT)
    return Response(content=piece.data, media_type="text/plain; charset=utf-8", headers=headers)
