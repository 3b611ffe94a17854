"""The four endpoints of the workflow-task API document."""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from conveyor.api.body import check_json_document, read_body, require_json_media_type
from conveyor.api.deps import (
    SECURED,
    TASK_ID,
    WORKFLOW_NAME,
    authenticate,
    authorization,
    commit_json,
    container,
    error_responses,
    run_read,
    task_id_from_path,
    task_times,
    whole_number,
)
from conveyor.api.errors import describe_validation_errors
from conveyor.api.schemas import CreateTaskIn, CreateTaskOut, ResultOut, TaskItemOut
from conveyor.domain.errors import InvalidParam
from conveyor.domain.principals import Principal
from conveyor.domain.states import public_status
from conveyor.domain.tasks import RepoRequest, Task
from conveyor.domain.views import TaskWithCommits
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
]
_TASK_PARAMETERS = [TASK_ID, WORKFLOW_NAME]


@router.get(
    "",
    response_model=list[TaskItemOut],
    responses=error_responses(400, 401, 500, 503),
    summary="Every task that built a commit, newest first",
    description="`commitId`: a full 40-hex commit id or a prefix of at least 8 hex "
    "characters, any case; anything else is 400. Every task of every workflow the token may "
    "view (all time) whose resolved commits include a commit starting with it, newest first, "
    "one entry per task; `limit` 1-1000, default 100. Before a task starts, `start_time` and "
    "`end_time` equal `create_time`. `url` is the task's page.",
    # The API's hot path: the values are read from the request as they are and checked
    # after authentication; FastAPI's parameter handling would only add cost here.
    openapi_extra={"parameters": _LOOKUP_PARAMETERS, **SECURED},
)
async def find_tasks_by_commit(request: Request) -> JSONResponse:
    c = container(request)
    query = request.query_params
    header = authorization(request)
    if c.commit_lookup is not None and header is not None:
        found = await c.commit_lookup.find(
            header, query.get("commitId", ""), lambda: _limit(query.get("limit"))
        )
        return JSONResponse([_item(f, c.config.public_url) for f in found])

    def lookup(request: Request) -> list[dict[str, Any]]:
        principal = authenticate(request)
        found = c.tasks.find_by_commit(
            principal, query.get("commitId", ""), _limit(query.get("limit"))
        )
        return [_item(f, c.config.public_url) for f in found]

    return JSONResponse(await run_read(request, lookup))


TaskOperation = Callable[[TaskService, Principal, str, int], Task]


def _act_on_task(request: Request, operation: TaskOperation) -> JSONResponse:
    c = container(request)
    principal = authenticate(request)
    path = request.path_params
    operation(c.tasks, principal, path["name"], task_id_from_path(path["id"]))
    return JSONResponse(_SUCCESS)


@router.post(
    "/id/{id}/pipelines/{name}/restart",
    response_model=ResultOut,
    responses=error_responses(400, 401, 403, 404, 409, 500, 503),
    summary="Rerun a failed, timed-out or cancelled task's jobs that did not pass",
    description="The task (identified by workflow and id) goes back to `created`, keeps its "
    "`create_time` and id, reruns only the jobs that did not pass, with the same commits and "
    "definitions as when it was created; its attempt count goes up by one. `created`, "
    "`running` or `passed` is 409. Needs `task:restart`.",
    openapi_extra={"parameters": _TASK_PARAMETERS, **SECURED},
)
def restart_task(request: Request) -> JSONResponse:
    return _act_on_task(request, TaskService.restart)


@router.post(
    "/id/{id}/pipelines/{name}/cancel",
    response_model=ResultOut,
    responses=error_responses(400, 401, 403, 404, 409, 500, 503),
    summary="Cancel a created or running task",
    description="`created`: cancelled at once, it never runs. `running`: cancelled as soon as "
    "the cancel is recorded; every process of the task gets SIGTERM, then SIGKILL after "
    "`cancel_grace`. Already cancelled: 200. `passed`, `failed` or `timeout` is 409 (history "
    "is not rewritten). Needs `task:cancel`.",
    openapi_extra={"parameters": _TASK_PARAMETERS, **SECURED},
)
def cancel_task(request: Request) -> JSONResponse:
    return _act_on_task(request, TaskService.cancel)


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
    responses=error_responses(400, 401, 403, 413, 415, 500, 503),
    summary="Create a workflow task: resolve every ref to a commit and queue it",
    description="Each target is a service of the workflow, at most once; each repo one of its "
    "build, at most once (no repos: every repo from its default branch). `branch` is a valid "
    "ref name; `pr` > 0 builds that merge request, merged onto `branch`. Every ref is "
    "resolved to a commit now, so the task is findable by commit at once and a restart "
    "rebuilds the same commits; a ref that does not exist is 400 naming it. `envs` sets build "
    "variables the service declares. Task ids are a per-workflow sequence; a rejected "
    "request consumes none. Needs `task:create`.",
    # The body is read after authentication (so a caller without a token always gets
    # 401), which FastAPI's own body parsing would do first; the schema is still published.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/CreateTaskIn"}}
            },
        },
        **SECURED,
    },
)
async def create_task(request: Request) -> JSONResponse:
    c = container(request)
    principal = await run_read(request, authenticate)
    require_json_media_type(request.headers.get("content-type"))
    create = _create_request(await read_body(request))
    task = await run_in_threadpool(c.tasks.create, principal, create)
    return JSONResponse({"workflow_name": task.workflow_name, "task_id": task.task_id})
