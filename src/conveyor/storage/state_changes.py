"""The one place that changes the state of a task or a job in the database.

Every change is checked by `transition()` and written as a conditional update from the
state it was read in, so a late or duplicate report changes nothing. A task's current
attempt row moves with the task, in the same statement's transaction: the API's
cancel and restart and the scheduler's start and finish write both, the same way.
A change's log line is written once its transaction has committed: a change rolled back
is never logged, and SQLite's one writer is not held while the line is written.
"""

import functools
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from conveyor.domain.states import (
    TERMINAL_JOB_STATES,
    TERMINAL_TASK_STATES,
    JobState,
    TaskState,
    public_status,
)
from conveyor.domain.tasks import Task
from conveyor.domain.transitions import transition
from conveyor.storage.db import PreparedWrite, after_commit
from conveyor.storage.outbox import Outbox
from conveyor.storage.tables import attempts, jobs, tasks

log = logging.getLogger("conveyor.state")


@functools.lru_cache(maxsize=256)  # a dozen shapes, per database the process opened
def _update_statement(
    dialect: sa.Dialect, table: sa.Table, where: tuple[str, ...], keys: tuple[str, ...]
) -> PreparedWrite:
    # All by bind parameters, compiled once per shape and dialect: every state change of
    # every task is one of a dozen shapes.
    stmt = (
        table.update()
        .where(*(table.c[k] == sa.bindparam(f"w_{k}") for k in where))
        .values({k: sa.bindparam(f"v_{k}", type_=table.c[k].type) for k in keys})
    )
    return PreparedWrite(stmt, dialect)


def _update(
    conn: Connection, table: sa.Table, where: dict[str, Any], values: dict[str, Any]
) -> int:
    """UPDATE `table` SET `values` WHERE each column of `where` equals its value: the
    number of rows changed."""
    update = _update_statement(conn.dialect, table, tuple(where), tuple(values))
    params = {f"w_{k}": v for k, v in where.items()}
    params.update({f"v_{k}": v for k, v in values.items()})
    return update.run(conn, params)


def move_task(
    conn: Connection,
    task: Task,
    target: TaskState,
    now: int,
    outbox: Outbox,
    *,
    attempt: int | None = None,
) -> bool:
    """Move `task` from the state it was read in to `target`; False if another writer
    moved it first. `attempt`: a restart, which opens that attempt (its row is the
    caller's to add) and closes the one it replaces if it was still being stopped.
    What the change tells GitLab and notification URLs goes into `outbox` in the same
    transaction."""
    new = transition(task.state, target)
    values: dict[str, Any] = {"state": new}
    if attempt is not None:
        values.update(attempt=attempt, start_time=None, end_time=None)
    elif new is TaskState.RUNNING:
        values.update(start_time=now, end_time=None)
    elif new in TERMINAL_TASK_STATES:
        values["end_time"] = now
    # The attempt too: a task read before it ended and was restarted is not the task
    # now running its next attempt in the same state.
    where = {"id": task.pk, "state": task.state, "attempt": task.attempt}
    if not _update(conn, tasks, where, values):
        return False
    this_attempt = {"task_pk": task.pk, "number": task.attempt}
    if attempt is None:
        times = {k: v for k, v in values.items() if k in ("start_time", "end_time") and v}
        _update(conn, attempts, this_attempt, {"state": new, **times})
    elif task.state is TaskState.CANCELLING:
        _update(conn, attempts, this_attempt, {"state": TaskState.CANCELLED, "end_time": now})
    if attempt is not None or public_status(task.state) is not public_status(new):
        outbox.task_changed(conn, task.pk, now)
    after_commit(conn, functools.partial(
        log.info,
        "task %s#%s: %s -> %s%s", task.workflow_name, task.task_id, task.state.value, new.value,
        f" (attempt {attempt})" if attempt is not None else "",
        extra={"workflow": task.workflow_name, "task": task.task_id,
               "from_state": task.state.value, "state": new.value},
    ))  # fmt: skip
    return True


def move_job(
    conn: Connection,
    job_id: int,
    current: JobState,
    target: JobState,
    now: int,
    *,
    detail: str | None = None,
    **values: Any,
) -> bool:
    """Move job `job_id` from `current` to `target`, with the times that go with it and
    `values` (the runner's host, an exit code…); False if it was no longer `current`."""
    new = transition(current, target)
    row: dict[str, Any] = {"state": new, **values}
    if new is JobState.QUEUED:
        row["queue_time"] = now
    elif new is JobState.RUNNING:
        row.update(start_time=now, heartbeat_time=now)
    elif new in TERMINAL_JOB_STATES:
        row.update(end_time=now, detail=detail)
    if not _update(conn, jobs, {"id": job_id, "state": current}, row):
        return False
    after_commit(conn, functools.partial(
        log.info,
        "job %s: %s -> %s%s", job_id, current.value, new.value, f" ({detail})" if detail else "",
        extra={"job": job_id, "from_state": current.value, "state": new.value},
    ))  # fmt: skip
    return True


def pending_jobs(conn: Connection, task: Task) -> list[int]:
    stmt = sa.select(jobs.c.id).where(jobs.c.task_pk == task.pk, jobs.c.state == JobState.PENDING)
    return list(conn.execute(stmt).scalars())
