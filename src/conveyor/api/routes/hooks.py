"""POST /api/hooks/gitlab: GitLab's Push, Tag Push and Merge Request hooks."""

import hashlib
import json
from collections.abc import Mapping

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
    "description": "without an Idempotency-Key: the same value and body again start nothing new",
    "schema": {"type": "string", "maxLength": 64},
}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "GitLab 17.4+: the same value again (a retry, a Resend) starts nothing new",
    "schema": {"type": "string", "maxLength": 90},
}


def delivery_id(headers: Mapping[str, str], body: bytes) -> str | None:
    """What makes two requests one delivery: GitLab's Idempotency-Key (17.4+; the same
    across its retries and a Resend), else X-Gitlab-Event-UUID with the body (one
    GitLab request can fire several hooks under one UUID: a push and the merge request
    updates it causes)."""
    key = headers.get("idempotency-key")
    if key:
        if len(key) > 90:
            raise InvalidParam("Idempotency-Key: longer than 90 characters")
        return f"key:{key}"
    uuid = headers.get("x-gitlab-event-uuid")
    if uuid:
        if len(uuid) > 64:
            raise InvalidParam("X-Gitlab-Event-UUID: longer than 64 characters")
        return f"uuid:{uuid}:{hashlib.sha256(body).hexdigest()[:16]}"
    return None


@router.post(
    "/gitlab",
    response_model=HookOut,
    responses=error_responses(400, 401, 413, 415, 500, 503),
    summary="Start the tasks whose triggers a GitLab push, tag or merge request matches",
    openapi_extra={
        "parameters": [_EVENT, _UUID, _IDEMPOTENCY],
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
    grant = hooks.check_secret(request.headers.get("x-gitlab-token"))
    require_json_media_type(request.headers.get("content-type"))
    raw = await read_body(request, HOOK_MAX_BYTES)
    check_json_document(raw)
    payload = json.loads(raw)
    if not isinstance(payload, dict):
        raise InvalidParam("body: a GitLab hook body is a JSON object")
    delivery = delivery_id(request.headers, raw)
    if delivery is not None and not grant.wide:
        # Deliveries under one secret never answer, or stand in for, another's.
        delivery = f"{delivery}@{','.join(sorted(grant.repos))}"[:100]
    answer = await run_in_threadpool(
        hooks.receive, request.headers.get("x-gitlab-event"), delivery, payload, grant
    )
    return JSONResponse(
        {
            "resultCode": 0,
            "errorMsg": "success",
            "tasks": [{"workflow_name": w, "task_id": t} for w, t in answer.tasks],
            "detail": answer.detail,
        }
    )
