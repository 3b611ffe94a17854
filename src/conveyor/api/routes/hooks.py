"""POST /api/hooks/gitlab: GitLab's Push, Tag Push and Merge Request hooks."""

import json

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from conveyor.api.body import check_json_document, read_body, require_json_media_type
from conveyor.api.deps import container, error_responses
from conveyor.api.schemas import HookOut
from conveyor.domain.errors import InvalidParam

router = APIRouter(prefix="/api/hooks", tags=["hooks"])

# GitLab lists at most 20 commits in a push, but each with every file it touched.
HOOK_MAX_BYTES = 4 * 1024 * 1024
_EVENT = {
    "name": "X-Gitlab-Event",
    "in": "header",
    "required": False,
    "description": "Push Hook, Tag Push Hook or Merge Request Hook; others start nothing",
    "schema": {"type": "string"},
}
_UUID = {
    "name": "X-Gitlab-Event-UUID",
    "in": "header",
    "required": False,
    "description": "a redelivery with the same value starts nothing new",
    "schema": {"type": "string", "maxLength": 100},
}


@router.post(
    "/gitlab",
    response_model=HookOut,
    responses=error_responses(400, 401, 413, 415, 500, 503),
    summary="Start the tasks whose triggers a GitLab push, tag or merge request matches",
    openapi_extra={
        "parameters": [_EVENT, _UUID],
        "security": [{"gitlab-token": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    },
)
async def gitlab_hook(request: Request) -> JSONResponse:
    hooks = container(request).hooks
    assert hooks is not None
    # The secret first, so nobody without it gets a body parsed (docs/adr/0002).
    hooks.check_secret(request.headers.get("x-gitlab-token"))
    require_json_media_type(request.headers.get("content-type"))
    raw = await read_body(request, HOOK_MAX_BYTES)
    check_json_document(raw)
    payload = json.loads(raw)
    if not isinstance(payload, dict):
        raise InvalidParam("body: a GitLab hook body is a JSON object")
    delivery = request.headers.get("x-gitlab-event-uuid") or None
    if delivery is not None and len(delivery) > 100:
        raise InvalidParam("X-Gitlab-Event-UUID: longer than 100 characters")
    answer = await run_in_threadpool(
        hooks.receive, request.headers.get("x-gitlab-event"), delivery, payload
    )
    return JSONResponse(
        {
            "resultCode": 0,
            "errorMsg": "success",
            "tasks": [{"workflow_name": w, "task_id": t} for w, t in answer.tasks],
            "detail": answer.detail,
        }
    )
