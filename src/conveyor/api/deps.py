"""What every route needs: the services, and the checks of shared path values."""

from typing import Annotated, Any

from fastapi import Header, Request

from conveyor.api.schemas import ErrorOut
from conveyor.domain.errors import InvalidParam
from conveyor.domain.tasks import CommitMatch, Task
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


def task_id_from_path(raw: str) -> int:
    return whole_number(raw, f"id: {raw!r} is not a positive task id", positive=True)


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
