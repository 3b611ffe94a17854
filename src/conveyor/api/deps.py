"""What every route needs: the services, the checks of shared path values, and how
the OpenAPI document describes them.

Routes read their path values, query and `Authorization` header from the request
themselves, after authentication (docs/adr/0002), so FastAPI does not see them as
parameters; each route declares them in `openapi_extra` with these helpers instead.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from conveyor.api.errors import MESSAGES
from conveyor.api.schemas import EXAMPLE_WORKFLOW, MAX_NAME
from conveyor.domain.errors import InvalidParam
from conveyor.domain.principals import Principal
from conveyor.domain.tasks import Task
from conveyor.domain.views import CommitMatch
from conveyor.wiring import Container

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <token>`",
    },
    "x-api-key": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Authorization: X-API-KEY <token>`: the whole header value",
    },
}
# GitLab's hooks authenticate with the hook's secret token instead (api/routes/hooks.py).
GITLAB_TOKEN_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "X-Gitlab-Token",
    "description": "the hook's secret token, as configured in gitlab.webhook_secret",
}
# Either scheme will do (each entry of an OpenAPI `security` list is an alternative).
SECURED: dict[str, Any] = {"security": [{name: []} for name in SECURITY_SCHEMES]}

_ERROR_WHEN = {
    400: "an invalid parameter, body, path value or reference",
    401: "no token, or a malformed, unknown, expired or revoked one",
    403: "the token's roles lack the permission on this workflow",
    404: "no such task or job",
    409: "the task's state does not allow this",
    413: "the body is larger than 1 MiB",
    415: "the body is not application/json",
    500: "a real fault, logged under the request id the detail names",
    503: "the database cannot be reached for now; retry after Retry-After seconds",
}
# What each error's `detail` looks like, for the examples in the OpenAPI document.
_ERROR_DETAIL = {
    400: "targets[0].build.repos[0].branch: 'a b' is not a valid branch name",
    401: "token expired",
    403: f"user 'bob' lacks task:cancel on workflow '{EXAMPLE_WORKFLOW}'",
    404: f"no task 7 in workflow '{EXAMPLE_WORKFLOW}'",
    409: f"task {EXAMPLE_WORKFLOW}#7 is passed; only created or running tasks can be cancelled",
    413: "the body is larger than 1048576 bytes",
    415: "Content-Type: must be application/json",
    500: "request id 3f2a9c0e6b1d4e8f9a7c5b3d1e0f2a4c",
    503: "the database cannot be reached; try again shortly (request id 3f2a9c0e6b1d)",
}
MAX_ID_DIGITS = 18
MAX_OFFSET_DIGITS = 15


ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorOut"}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error rows a route can answer with, each as ErrorOut in JSON. The
    content is spelled out (not `model`): FastAPI files a model under the route's own
    media type, which for the log is text/plain. app.openapi() publishes ErrorOut."""
    return {
        code: {
            "description": _ERROR_WHEN[code],
            "content": {
                "application/json": {
                    "schema": ERROR_SCHEMA,
                    "example": {
                        "resultCode": code,
                        "errorMsg": MESSAGES[code],
                        "detail": _ERROR_DETAIL[code],
                    },
                }
            },
        }
        for code in codes
    }


def path_parameter(
    name: str, description: str, schema: dict[str, Any], example: object
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
        "example": example,
    }


def whole_number_schema(minimum: int, digits: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": 10**digits - 1}


WORKFLOW_NAME = path_parameter(
    "name",
    "the workflow's name",
    {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
    EXAMPLE_WORKFLOW,
)
TASK_ID = path_parameter(
    "id", "the task's id within its workflow", whole_number_schema(1, MAX_ID_DIGITS), 1
)


def container(request: Request) -> Container:
    found: Container = request.app.state.container
    return found


def whole_number(raw: str, problem: str, *, positive: bool = False, digits: int = 18) -> int:
    """`raw` as a non-negative int (positive: no leading zero, not 0), else a 400 with
    `problem` as its detail. Digits only: no sign, space, underscore or exponent."""
    if (
        not raw.isascii()
        or not raw.isdigit()
        or len(raw) > digits
        or (positive and raw.startswith("0"))
    ):
        raise InvalidParam(problem)
    return int(raw)


def authorization(request: Request) -> str | None:
    return request.headers.get("authorization")


SESSION_COOKIE = "conveyor_session"
_SAFE_METHODS = ("GET", "HEAD")


def authenticate(request: Request) -> Principal:
    """Who calls: the token in the Authorization header (the API's way), or else a
    page's session cookie, whose requests that change something must carry the
    session's X-CSRF-Token."""
    header = authorization(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    tokens = container(request).tokens
    if header is None and cookie:
        changes = request.method not in _SAFE_METHODS
        return tokens.authenticate_session(cookie, request.headers.get("x-csrf-token"), changes)
    return tokens.authenticate(header)


T = TypeVar("T")


async def run_read(request: Request, read: Callable[[Request], T]) -> T:
    """`read(request)`, which only reads the database: in a worker thread where reads
    wait on the network (PostgreSQL), on the event loop where they are local and short
    (SQLite), since the hand-off to a thread and back costs more than such a read under
    load (docs/adr/0004-lookup-hot-path.md)."""
    if container(request).db.reads_wait_on_io:
        return await run_in_threadpool(read, request)
    return read(request)


def task_id_from_path(raw: str) -> int:
    return whole_number(
        raw, f"id: {raw!r} is not a positive task id", positive=True, digits=MAX_ID_DIGITS
    )


def task_times(task: Task) -> dict[str, int]:
    """The API's times: an unset start or end reads as create_time, as in the original."""
    return {
        "create_time": task.create_time,
        "start_time": task.start_time if task.start_time is not None else task.create_time,
        "end_time": task.end_time if task.end_time is not None else task.create_time,
    }


def commit_json(match: CommitMatch) -> dict[str, str]:
    return {
        "service": match.service,
        "repo_name": match.repo_name,
        "kind": match.kind.value,
        "ref": match.ref,
        "commit": match.commit,
    }
