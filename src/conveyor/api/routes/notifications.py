"""The notification outbox for operators: what was not delivered, and sending it again."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from conveyor.api.deps import (
    MAX_ID_DIGITS,
    SECURED,
    authenticate,
    container,
    error_responses,
    path_parameter,
    whole_number,
    whole_number_schema,
)
from conveyor.api.schemas import NotificationOut
from conveyor.domain.notifications import GITLAB, shown_url
from conveyor.domain.outbox import OutboxEntry

router = APIRouter(prefix="/api/notifications", tags=["notifications"])

_STATE = {
    "name": "state",
    "in": "query",
    "required": False,
    "description": "undelivered (waiting or dropped), waiting, dropped, delivered or superseded",
    "schema": {"type": "string", "default": "undelivered"},
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "at most this many, newest first",
    "schema": {**whole_number_schema(1, 4), "default": 100},
}
_ID = path_parameter("id", "the notification's id", whole_number_schema(0, MAX_ID_DIGITS), 1)


def _json(entry: OutboxEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "channel": entry.channel,
        "event": entry.event,
        # A webhook URL may hold its credential (Slack's, say): shown without its path.
        "url": entry.url if entry.channel == GITLAB else shown_url(entry.url),
        "workflow_name": entry.workflow_name,
        "task_id": entry.task_id,
        "state": entry.state,
        "attempts": entry.attempts,
        "create_time": entry.create_time,
        "next_time": entry.next_time,
        "end_time": entry.end_time,
        "last_error": entry.last_error,
        "delivery_id": entry.delivery_id,
        "body": entry.body,
    }


@router.get(
    "",
    response_model=list[NotificationOut],
    responses=error_responses(400, 401, 500, 503),
    summary="Notifications (GitLab statuses, webhook events) by state, newest first",
    openapi_extra={"parameters": [_STATE, _LIMIT], **SECURED},
)
def list_notifications(request: Request) -> JSONResponse:
    c = container(request)
    principal = authenticate(request)
    raw_limit = request.query_params.get("limit", "100")
    limit = whole_number(raw_limit, f"limit: {raw_limit!r} must be a whole number", digits=4)
    assert c.notifications is not None
    found = c.notifications.list(principal, request.query_params.get("state", "undelivered"), limit)
    return JSONResponse([_json(e) for e in found])


@router.post(
    "/{id}/retry",
    response_model=NotificationOut,
    responses=error_responses(400, 401, 403, 404, 409, 500, 503),
    summary="Send a waiting or dropped notification again now",
    openapi_extra={"parameters": [_ID], **SECURED},
)
def retry_notification(request: Request) -> JSONResponse:
    c = container(request)
    principal = authenticate(request)
    raw = request.path_params["id"]
    msg_id = whole_number(raw, f"id: {raw!r} is not a notification id", digits=MAX_ID_DIGITS)
    assert c.notifications is not None
    return JSONResponse(_json(c.notifications.send_again(principal, msg_id)))
