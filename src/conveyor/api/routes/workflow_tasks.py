"""The four endpoints of the workflow-task API document."""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from conveyor.api.body import check_json_document, read_body, require_json_media_type
from conveyor.api.deps import (
    ERROR_RESPONSES,
    Authorization,
    commit_json,
    container,
    task_id_from_path,
    task_times,
    whole_number,
)
from conveyor.api.errors import describe_validation_errors
from conveyor.api.schemas import CreateTaskIn, CreateTaskOut, ErrorOut, ResultOut, TaskItemOut
from conveyor.domain.errors import InvalidParam
from conveyor.domain.states import public_status
from conveyor.domain.tasks import Principal, RepoRequest, Task, TaskWithCommits
from conveyor.services.tasks import CreateRequest, TargetRequest, TaskService

router = APIRouter(prefix="/api/directory/workflowTask", tags=["workflow tasks"])

_SUCCESS = {"resultCode": 0, "errorMsg": "success"}


def _limit(raw: str | None) -> int:
    if raw is None:
        return 100
    return whole_number(raw, f"limit: {raw!r} must be a whole number from 1 to 1000", digits=4)


def _item(found: TaskWithCommits, public_url: str) -> dict[str, Any]:
    task = found.task
    return {
        "task_id": task.task_id,
        "url": f"{public_url}/workflows/{task.workflow_name}/tasks/{task.task_id}",
        "status": public_status(task.state).value,
        **task_times(task),
        "workflow_name": task.workflow_name,
        "env_name": task.env_name,
        "repos": [commit_json(m) for m in found.matches],
    }


_LOOKUP_PARAMETERS = [
    {
        "name": "commitId",
        "in": "query",
        "required": True,
        "description": "full commit id or a prefix of at least 8 hex digits, either case",
        "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{8,40}$"},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "how many tasks at most",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    },
    {
        "name": "authorization",
        "in": "header",
        "required": True,
        "description": "`Bearer <token>` or `X-API-KEY <token>`",
        "schema": {"type": "string"},
    },
]


@router.get(
    "",
    response_model=list[TaskItemOut],
    responses=ERROR_RESPONSES,
    summary="Every task that built a commit, newest first",
    # The API's hot path: the values are read from the request as they are and checked
    # after authentication; FastAPI's parameter handling would only add cost here.
    openapi_extra={"parameters": _LOOKUP_PARAMETERS},
)
async def find_tasks_by_commit(request: Request) -> JSONResponse:
    c = container(request)
    authorization = request.headers.get("authorization")
    query = request.query_params

    def lookup() -> list[dict[str, Any]]:
        principal = c.tokens.authenticate(authorization)
        found = c.tasks.find_by_commit(
            principal, query.get("commitId", ""), _limit(query.get("limit"))
        )
        return [_item(f, c.config.public_url) for f in found]

    # A thread hand-off costs more than the two indexed reads on SQLite (docs/adr/0004).
    items = await run_in_threadpool(lookup) if c.db.reads_wait_on_io else lookup()
    return JSONResponse(items)


TaskOperation = Callable[[TaskService, Principal, str, int], Task]


def _act_on_task(
    request: Request, id: str, name: str, authorization: str | None, operation: TaskOperation
) -> JSONResponse:
    c = container(request)
    principal = c.tokens.authenticate(authorization)
    operation(c.tasks, principal, name, task_id_from_path(id))
    return JSONResponse(_SUCCESS)


@router.post(
    "/id/{id}/pipelines/{name}/restart",
    response_model=ResultOut,
    responses=ERROR_RESPONSES,
    summary="Rerun a failed, timed-out or cancelled task's jobs that did not pass",
)
def restart_task(
    request: Request, id: str, name: str, authorization: Authorization = None
) -> JSONResponse:
    return _act_on_task(request, id, name, authorization, TaskService.restart)


@router.post(
    "/id/{id}/pipelines/{name}/cancel",
    response_model=ResultOut,
    responses=ERROR_RESPONSES,
    summary="Cancel a created or running task",
)
def cancel_task(
    request: Request, id: str, name: str, authorization: Authorization = None
) -> JSONResponse:
    return _act_on_task(request, id, name, authorization, TaskService.cancel)


def _create_request(raw: bytes) -> CreateRequest:
    check_json_document(raw)
    try:
        body = CreateTaskIn.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidParam(describe_validation_errors(exc.errors())) from exc
    return CreateRequest(
        workflow_name=body.workflow_name,
        env_name=body.env_name,
        targets=tuple(
            TargetRequest(
                name=t.name,
                repos=tuple(RepoRequest(r.repo_name, r.branch, r.pr) for r in t.build.repos),
                envs=tuple((e.key, e.value) for e in t.envs),
            )
            for t in body.targets
        ),
    )


@router.post(
    "/create",
    response_model=CreateTaskOut,
    responses={**ERROR_RESPONSES, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}},
    summary="Create a workflow task: resolve every ref to a commit and queue it",
    # The body is read after authentication (so a caller without a token always gets
    # 401), which FastAPI's own body parsing would do first; the schema is still published.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/CreateTaskIn"}}
            },
        }
    },
)
async def create_task(request: Request, authorization: Authorization = None) -> JSONResponse:
    c = container(request)
    principal = await run_in_threadpool(c.tokens.authenticate, authorization)
    require_json_media_type(request.headers.get("content-type"))
    create = _create_request(await read_body(request))
    task = await run_in_threadpool(c.tasks.create, principal, create)
    return JSONResponse({"workflow_name": task.workflow_name, "task_id": task.task_id})
