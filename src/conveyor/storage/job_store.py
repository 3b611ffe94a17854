"""What the scheduler and the runners read and write about jobs.

Every state change is a conditional update from the state it was read in, checked by
`transition()` first: a late or duplicate report changes nothing.
"""

import logging
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from conveyor.domain.jobs import JobResult, JobRow
from conveyor.domain.states import JobState, TaskState
from conveyor.domain.tasks import Task, TaskSpec
from conveyor.storage.db import (
    Database,
    PreparedQuery,
    after_commit,
    after_end,
    json_value,
    savepoint,
)
from conveyor.storage.notify import notify_in
from conveyor.storage.outbox import NO_OUTBOX, Outbox
from conveyor.storage.state_changes import move_job, move_task
from conveyor.storage.tables import BigId, jobs, tasks
from conveyor.storage.task_store import TASK_COLUMNS, latest_jobs, task_from_row

log = logging.getLogger("conveyor.runner")

# A log's end the database refuses this many times is given up, for the result's sake.
LOG_END_TRIES = 3

_JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.task_pk,
    jobs.c.attempt,
    jobs.c.stage,
    jobs.c.service,
    jobs.c.state,
    jobs.c.outputs,
)


def _job(row: Sequence[Any]) -> JobRow:
    """A JobRow from a row that starts with _JOB_COLUMNS: a Core row, or a raw tuple of
    a PreparedQuery, whose JSON `outputs` is text on SQLite (psycopg decodes it)."""
    pk, task_pk, attempt, stage, service, state, outputs = row[:7]
    outputs = json_value(outputs)
    return JobRow(pk, task_pk, attempt, stage, service, JobState(state), dict(outputs or {}))


# The scheduler's and the runners' reads, a few per job: compiled once and run on the
# DBAPI connection (PreparedQuery: 10-20 against 100-300 us each through Core).
_CURRENT_JOBS = latest_jobs(sa.bindparam("task_pk", type_=BigId), *_JOB_COLUMNS).order_by(jobs.c.id)
_HAS_LIVE_JOBS = (
    sa.select(jobs.c.id)
    .where(
        jobs.c.task_pk == sa.bindparam("task_pk"),
        sa.or_(jobs.c.state == sa.bindparam("queued"), jobs.c.state == sa.bindparam("running")),
    )
    .limit(1)
)
_CANCEL_STATE = (
    sa.select(tasks.c.state, tasks.c.attempt, jobs.c.state, jobs.c.attempt)
    .join(tasks, tasks.c.id == jobs.c.task_pk)
    .where(jobs.c.id == sa.bindparam("job_id"))
)
_TASK_SPEC = sa.select(tasks.c.spec).where(tasks.c.id == sa.bindparam("task_pk"))
_TASK_BY_PK = sa.select(*TASK_COLUMNS).where(tasks.c.id == sa.bindparam("task_pk"))


def _tasks_in_statement(n_states: int, paged: bool) -> sa.Select[Any]:
    states = [tasks.c.state == sa.bindparam(f"s{i}") for i in range(n_states)]
    stmt = sa.select(*TASK_COLUMNS).where(sa.or_(*states))
    if paged:
        stmt = stmt.where(tasks.c.id > sa.bindparam("after"))
    return stmt.order_by(tasks.c.id).limit(sa.bindparam("limit"))


class SqlJobStore:
    def __init__(self, db: Database, outbox: Outbox = NO_OUTBOX) -> None:
        self._db = db
        self._outbox = outbox
        dialect = db.engine.dialect
        self._current_jobs = PreparedQuery(_CURRENT_JOBS, dialect)
        self._has_live_jobs = PreparedQuery(_HAS_LIVE_JOBS, dialect)
        self._cancel_state = PreparedQuery(_CANCEL_STATE, dialect)
        self._task_spec = PreparedQuery(_TASK_SPEC, dialect)
        self._task_by_pk = PreparedQuery(_TASK_BY_PK, dialect)
        self._tasks_in: dict[tuple[int, bool], PreparedQuery] = {}

    # -- tasks ------------------------------------------------------------------------

    def tasks_in(
        self, *states: TaskState, limit: int = 1000, after: int | None = None
    ) -> list[Task]:
        """Tasks in these states in the order they were stored (within a workflow, by task
        id: both are allocated under the workflow's counter); `after` (a pk) pages on."""
        key = (len(states), after is not None)
        query = self._tasks_in.get(key)
        if query is None:
            query = self._tasks_in[key] = PreparedQuery(
                _tasks_in_statement(*key), self._db.engine.dialect
            )
        params: dict[str, Any] = {f"s{i}": state.value for i, state in enumerate(states)}
        params.update(limit=limit, after=after)
        return [task_from_row(row) for row in self._db.read_rows(query, params)]

    def tasks_among(self, pks: Collection[int], *states: TaskState) -> list[Task]:
        if len(pks) == 1:  # a job of this task ended: the usual case
            task = self._task(next(iter(pks)))
            return [task] if task is not None and task.state in states else []
        # Tasks in states a pass looks for are few (max_parallel_tasks): read them all.
        return [task for task in self.tasks_in(*states) if task.pk in pks] if pks else []

    def start_task(self, task: Task, now: int) -> list[JobRow] | None:
        """QUEUED -> RUNNING and, in the same transaction, its pending builds -> QUEUED:
        the builds queued (to hand to the executor), or None if someone else started
        the task first."""
        with self._db.write() as conn:
            if not move_task(conn, task, TaskState.RUNNING, now, self._outbox):
                return None
            current = self.current_jobs_in(conn.connection.dbapi_connection, task.pk)
            pending = [j for j in current if j.stage == "build" and j.state is JobState.PENDING]
            return [
                replace(job, state=JobState.QUEUED)
                for job in pending
                if move_job(conn, job.id, JobState.PENDING, JobState.QUEUED, now)
            ]

    def finish_task(self, task: Task, outcome: TaskState, now: int) -> bool:
        with self._db.write() as conn:
            return move_task(conn, task, outcome, now, self._outbox)

    def task_of(self, task_pk: int) -> Task:
        task = self._task(task_pk)
        if task is None:
            raise LookupError(f"no task with pk {task_pk}")
        return task

    def _task(self, task_pk: int) -> Task | None:
        rows = self._db.read_rows(self._task_by_pk, {"task_pk": task_pk})
        return task_from_row(rows[0]) if rows else None

    def task_spec(self, task_pk: int) -> TaskSpec:
        [(data,)] = self._db.read_rows(self._task_spec, {"task_pk": task_pk})
        return TaskSpec.from_json(json_value(data))

    # -- jobs -------------------------------------------------------------------------

    def current_jobs(self, task_pk: int) -> list[JobRow]:
        """The latest row of each (stage, service): what the task's status is made of."""
        return [_job(r) for r in self._db.read_rows(self._current_jobs, {"task_pk": task_pk})]

    def current_jobs_in(self, dbapi_conn: Any, task_pk: int) -> list[JobRow]:
        """current_jobs, read on the driver's connection of an open write transaction
        (which sees what that transaction has written)."""
        return [_job(r) for r in self._current_jobs.rows(dbapi_conn, {"task_pk": task_pk})]

    def has_live_jobs(self, task_pk: int) -> bool:
        """Any job of the task queued for or held by a runner, of any attempt."""
        return bool(self._db.read_rows(self._has_live_jobs, _live_params(task_pk)))

    def move_job(
        self, job: JobRow, new_state: JobState, now: int, detail: str | None = None
    ) -> bool:
        with self._db.write() as conn:
            return move_job(conn, job.id, job.state, new_state, now, detail=detail)

    def jobs_queued_before(self, time: int) -> list[JobRow]:
        """Jobs handed to the executor before `time` that no runner has claimed."""
        stmt = sa.select(*_JOB_COLUMNS).where(
            jobs.c.state == JobState.QUEUED, jobs.c.queue_time < time
        )
        with self._db.read() as conn:
            return [_job(r) for r in conn.execute(stmt)]

    def stale_jobs(self, heartbeat_before: int) -> list[JobRow]:
        stmt = sa.select(*_JOB_COLUMNS).where(
            jobs.c.state == JobState.RUNNING, jobs.c.heartbeat_time < heartbeat_before
        )
        with self._db.read() as conn:
            return [_job(r) for r in conn.execute(stmt)]

    def running_jobs_of_host(self, hostname: str) -> list[tuple[JobRow, str]]:
        """Running jobs of runners on `hostname` (runner ids `<hostname>:<pid>`)."""
        stmt = sa.select(*_JOB_COLUMNS, jobs.c.runner_host).where(
            jobs.c.state == JobState.RUNNING, jobs.c.runner_host.startswith(f"{hostname}:")
        )
        with self._db.read() as conn:
            return [(_job(r), r.runner_host) for r in conn.execute(stmt)]

    # -- what runners report ------------------------------------------------------------

    def claim_job(self, job_id: int, host: str, now: int) -> bool:
        """QUEUED -> RUNNING for one runner only; a duplicate delivery gets False."""
        with self._db.write() as conn:
            return move_job(conn, job_id, JobState.QUEUED, JobState.RUNNING, now, runner_host=host)

    def heartbeat(self, job_id: int, now: int, pid: int | None) -> None:
        values: dict[str, int] = {"heartbeat_time": now}
        if pid is not None:
            values["pid"] = pid
        with self._db.write() as conn:
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.state == JobState.RUNNING)
                .values(**values)
            )

    def cancel_requested(self, job_id: int) -> bool:
        """True once the task is being cancelled, the job belongs to an attempt a restart
        replaced, or the job was ended without its runner (reaped as lost)."""
        [(task_state, attempt, job_state, job_attempt)] = self._db.read_rows(
            self._cancel_state, {"job_id": job_id}
        )
        return (
            task_state in (TaskState.CANCELLING, TaskState.CANCELLED)
            or attempt != job_attempt
            or job_state != JobState.RUNNING
        )

    def unreachable(self, exc: BaseException) -> bool:
        """Whether `exc` says the database is away for now (Database.unreachable)."""
        return self._db.unreachable(exc)

    def finish_job(
        self,
        job_id: int,
        result: JobResult,
        now: int,
        pid: int | None = None,
        log_end: Callable[[Connection], None] | None = None,
        then: "Callable[[ResultTransaction], None] | None" = None,
    ) -> bool:
        """Record a runner's result, and with it `log_end` (the end of the job's log,
        written in the same transaction); the result is ignored if the job already
        ended (reaped, say), the log's end is stored all the same. A result recorded is
        handed to `then` before the commit, for the task's next step to go with it;
        without `then` (a worker's), the commit notifies the server instead."""
        recorded = {} if pid is None else {"pid": pid}
        with self._db.write() as conn:
            if log_end is not None:
                log_end(conn)
            done = move_job(
                conn,
                job_id,
                JobState.RUNNING,
                JobState(result.outcome.value),
                now,
                detail=result.detail,
                exit_code=result.exit_code,
                outputs=result.outputs or None,
                **recorded,
            )
            if done and then is not None:
                then(ResultTransaction(self, conn))
            elif done:
                notify_in(conn, job_id)
        return done

    def in_transaction(self, step: "Callable[[ResultTransaction], None]") -> None:
        """`step` with the scheduler's reads and moves in one write transaction: a task's
        next step, for a result that another process recorded, in one transaction
        rather than a read and then a transaction for each move."""
        with self._db.write() as conn:
            step(ResultTransaction(self, conn))


class ResultTransaction:
    """The scheduler's reads and moves inside one write transaction
    (services.ports.JobTransaction): mostly the one that records a job's result, so
    that the task's next step (its deploys queued, or its end) costs no transaction of
    its own. Reads go through the transaction's connection, so they see the result it
    has just written."""

    def __init__(self, store: SqlJobStore, conn: Connection) -> None:
        self._store = store
        self._conn = conn
        self._dbapi: Any = conn.connection.dbapi_connection

    def task(self, task_pk: int) -> Task | None:
        rows = self._store._task_by_pk.rows(self._dbapi, {"task_pk": task_pk})
        return task_from_row(rows[0]) if rows else None

    def current_jobs(self, task_pk: int) -> list[JobRow]:
        return self._store.current_jobs_in(self._dbapi, task_pk)

    def has_live_jobs(self, task_pk: int) -> bool:
        return bool(self._store._has_live_jobs.rows(self._dbapi, _live_params(task_pk)))

    def move_job(
        self, job: JobRow, new_state: JobState, now: int, detail: str | None = None
    ) -> bool:
        return move_job(self._conn, job.id, job.state, new_state, now, detail=detail)

    def finish_task(self, task: Task, outcome: TaskState, now: int) -> bool:
        return move_task(self._conn, task, outcome, now, self._store._outbox)

    def after_commit(self, action: Callable[[], object]) -> None:
        after_commit(self._conn, action)

    def after_end(self, action: Callable[[], object]) -> None:
        after_end(self._conn, action)

    def undone_on_error(self) -> AbstractContextManager[None]:
        return savepoint(self._conn)


def _live_params(task_pk: int) -> dict[str, Any]:
    return {"task_pk": task_pk, "queued": JobState.QUEUED.value, "running": JobState.RUNNING.value}


class StoreJobReporter:
    """A runner's reports, written to the database. With `then`, the result's
    transaction takes the task's next step too (ResultTransaction); without it, or if the
    result came too late to count, `on_finished` wakes the scheduler once it is stored.

    The script's pid is for people reading the jobs table, not for finding the job's
    processes (their environment marks do that): it rides on the next heartbeat and on
    the result rather than costing a transaction of its own at every job's start.
    """

    def __init__(
        self,
        store: SqlJobStore,
        job_id: int,
        host: str,
        clock: Callable[[], int],
        on_finished: Callable[[], None],
        log_end: Callable[[Connection], None] | None = None,
        then: Callable[[ResultTransaction], None] | None = None,
    ) -> None:
        self._store = store
        self._then = then
        self._job_id = job_id
        self._host = host
        self._clock = clock
        self._on_finished = on_finished
        self._log_end = log_end
        self._log_end_refused = 0
        self._pid: int | None = None

    def claim(self) -> bool:
        return self._store.claim_job(self._job_id, self._host, self._clock())

    def started(self, pid: int) -> None:
        self._pid = pid

    def heartbeat(self) -> None:
        self._store.heartbeat(self._job_id, self._clock(), self._pid)

    def cancel_requested(self) -> bool:
        return self._store.cancel_requested(self._job_id)

    def finished(self, result: JobResult) -> None:
        log_end = self._log_end
        try:
            done = self._store.finish_job(
                self._job_id, result, self._clock(), self._pid, log_end, self._then
            )
        except Exception as exc:
            if log_end is not None and not self._store.unreachable(exc):
                # The database is there but refuses the log's end: once, it may be a
                # chunk of a write whose answer was lost (its retry sorts that out);
                # every time, the result must not wait on it until the job is reaped.
                self._log_end_refused += 1
                if self._log_end_refused >= LOG_END_TRIES:
                    log.error(
                        "job %s: the end of its log was refused %d times (%s); its result "
                        "is recorded without it",
                        self._job_id,
                        self._log_end_refused,
                        exc,
                    )
                    self._log_end = None
            raise
        if self._then is None or not done:
            self._on_finished()
