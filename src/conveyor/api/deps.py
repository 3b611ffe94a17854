"""What every route needs: the services, and the checks of shared path values."""

from typing import Annotated, Any

from fastapi import Header, Request

from conveyor.api.schemas import ErrorOut
from conveyor.domain.errors import InvalidParam
from conveyor.wiring import Container

Authorization = Annotated[
    str | None,
    Header(description="`Bearer <token>` or `X-API-KEY <token>`"),
]
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 500)
}


def container(request: Request) -> Container:
    found: Container = request.app.state.container
    return found


def task_id_from_path(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or raw.startswith("0") or len(raw) > 18:
        raise InvalidParam(f"id: {raw!r} is not a positive task id")
    return int(raw)
