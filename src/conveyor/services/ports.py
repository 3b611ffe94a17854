"""What the use cases need from storage and SCM, as small Protocols."""

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from conveyor.domain.audit import AuditEntry
from conveyor.domain.jobs import JobResult, JobRow, JobSpec
from conveyor.domain.principals import SessionInfo, TokenInfo
from conveyor.domain.states import JobState, TaskState
from conveyor.domain.tasks import Task, TaskSpec
from conveyor.domain.views import TaskDetail, TaskWithCommits, WorkflowSummary

Clock = Callable[[], int]
"""Unix seconds now."""


class TaskWriter(Protocol):
    """Operations inside one write transaction; all or nothing."""

    def next_task_id(self, workflow_name: str) -> int: ...

    def add_task(
        self,
        *,
        task_id: int,
        spec: TaskSpec,
        created_by: str,
        create_time: int,
        trigger_key: str | None = None,
    ) -> Task: ...

    def claim_delivery(self, delivery: str, now: int) -> bool:
        """Record a hook delivery's id; False if it was recorded before (a redelivery:
        the caller creates nothing)."""
        ...

    def record_delivery(self, delivery: str, tasks: list[tuple[str, int]]) -> None:
        """The tasks the claimed delivery created, for its redeliveries' answers."""
        ...

    def active_tasks_with_trigger(self, workflow_name: str, trigger_key: str) -> list[Task]:
        """Created or running tasks of the workflow that hooks started for the same
        branch or merge request."""
        ...

    def get_task(self, workflow_name: str, task_id: int) -> Task | None: ...

    def move_task(
        self, task: Task, target: TaskState, now: int, *, attempt: int | None = None
    ) -> Task:
        """Move `task` on from the state it was read in, its attempt row with it; raises
        LostUpdate if another writer won. `attempt`: a restart opening that attempt."""
        ...

    def add_attempt(self, task: Task, requested_by: str, create_time: int) -> None: ...

    def cancel_pending_jobs(self, task: Task, now: int) -> None: ...

    def add_jobs_to_rerun(self, task: Task) -> int:
        """Queue, in `task.attempt`, every job whose latest run did not pass."""
        ...

    def audit(self, entry: AuditEntry, time: int) -> None: ...


class TaskStore(Protocol):
    def write(self) -> AbstractContextManager[TaskWriter]: ...

    def workflow_summaries(self, names: list[str]) -> list[WorkflowSummary]: ...

    def list_tasks(
        self,
        workflow_name: str,
        limit: int,
        before: int | None,
        states: list[TaskState] | None,
        branch: str | None,
        commit_prefix: str | None,
    ) -> list[TaskWithCommits]:
        """The workflow's tasks, newest first, with all their commits; `before` (a task
        id) pages on."""
        ...

    def delivery_tasks(self, delivery: str) -> list[tuple[str, int]] | None:
        """The tasks a hook delivery created; None if it was never received."""
        ...

    def detail(self, workflow_name: str, task_id: int) -> TaskDetail | None: ...

    def find_by_commit(
        self, commit_prefix: str, workflows: frozenset[str] | None, limit: int
    ) -> list[TaskWithCommits]:
        """Tasks pinning a commit starting with `commit_prefix` (lower case), newest first.

        `workflows` limits the search to those workflows; None means all of them.
        """
        ...


class TokenStore(Protocol):
    def add(
        self,
        *,
        token_hash: str,
        user: str,
        roles: Sequence[str],
        create_time: int,
        expire_time: int | None,
        audit: AuditEntry,
    ) -> TokenInfo: ...

    def find_by_hash(self, token_hash: str) -> tuple[TokenInfo, str] | None:
        """The token and its stored hash, for a constant-time comparison."""
        ...

    def list(self) -> list[TokenInfo]: ...

    def revoke(self, token_id: int, time: int, audit: AuditEntry) -> bool: ...

    def add_session(
        self, id_hash: str, token_id: int, csrf: str, create_time: int, expire_time: int
    ) -> None: ...

    def find_session(self, id_hash: str) -> SessionInfo | None: ...

    def end_session(self, id_hash: str) -> bool: ...

    def prune_sessions(self, before: int) -> None: ...


class RefResolver(Protocol):
    def resolve(self, url: str, refs: Sequence[str]) -> dict[str, str]:
        """Map each of `refs` (full ref names) that exists in `url` to its commit id."""
        ...


class Executor(Protocol):
    """Runs jobs somewhere; reports go to the database, not back through here."""

    def submit(self, job: JobSpec) -> None: ...

    def shutdown(self, wait: bool) -> None: ...


class JobMoves(Protocol):
    """What a task's step reads and moves: in transactions of its own (JobStore), or in
    the one that records a job's result (JobTransaction)."""

    def current_jobs(self, task_pk: int) -> list[JobRow]: ...

    def has_live_jobs(self, task_pk: int) -> bool: ...

    def move_job(
        self, job: JobRow, new_state: JobState, now: int, detail: str | None = None
    ) -> bool: ...

    def finish_task(self, task: Task, outcome: TaskState, now: int) -> bool: ...


class JobTransaction(JobMoves, Protocol):
    """A job's result, recorded in a transaction not yet committed: its task's next step
    can be taken in the same one (storage/job_store.py)."""

    def task(self, task_pk: int) -> Task | None: ...

    def after_commit(self, action: Callable[[], object]) -> None:
        """Run `action` once the transaction has committed; never if it rolls back, nor
        if the part that asked for it is undone (undone_on_error)."""
        ...

    def after_end(self, action: Callable[[], object]) -> None:
        """Run `action` once the transaction has ended, committed or rolled back (after
        the after_commit actions)."""
        ...

    def undone_on_error(self) -> AbstractContextManager[None]:
        """A part of the transaction that, if it raises, is undone alone: the result,
        written before it, is committed all the same."""
        ...


class JobStore(JobMoves, Protocol):
    """What the scheduler reads and decides about jobs (storage/job_store.py)."""

    def tasks_in(
        self, *states: TaskState, limit: int = 1000, after: int | None = None
    ) -> list[Task]:
        """Tasks in these states, first stored first; `after` (a task pk) pages on."""
        ...

    def tasks_among(self, pks: Collection[int], *states: TaskState) -> list[Task]:
        """Those of the tasks `pks` that are in these states, first stored first."""
        ...

    def start_task(self, task: Task, now: int) -> list[JobRow] | None:
        """Claim the task and queue its pending builds in one transaction: the builds
        queued, or None if someone else started it first."""
        ...

    def task_of(self, task_pk: int) -> Task: ...

    def task_spec(self, task_pk: int) -> TaskSpec: ...

    def stale_jobs(self, heartbeat_before: int) -> list[JobRow]: ...

    def jobs_queued_before(self, time: int) -> list[JobRow]: ...

    def finish_job(self, job_id: int, result: JobResult, now: int) -> bool: ...

    def in_transaction(self, step: Callable[[JobTransaction], None]) -> None:
        """`step`, given one write transaction of its own."""
        ...

    def running_jobs_of_host(self, hostname: str) -> list[tuple[JobRow, str]]: ...


class LogStore(Protocol):
    def read(self, job_id: int, offset: int, limit: int) -> tuple[bytes, int]:
        """Up to `limit` bytes of the job's log from `offset`, and the log's size now."""
        ...


class TaskEvents(Protocol):
    """Told of tasks created and ended, after the change is stored (metrics, and
    requests waiting for a task's end)."""

    def task_created(self, workflow: str) -> None: ...

    def task_finished(
        self, workflow: str, task_id: int, status: str, seconds: float | None
    ) -> None: ...


class NoTaskEvents:
    def task_created(self, workflow: str) -> None:
        pass

    def task_finished(
        self, workflow: str, task_id: int, status: str, seconds: float | None
    ) -> None:
        pass


class AsyncLookups(Protocol):
    """The API's hot reads (the lookup by commit, a task's detail), run on the event loop
    (PostgreSQL: ADR 0004)."""

    async def token(self, token_hash: str) -> tuple[TokenInfo, str] | None:
        """The token with this hash and its stored hash, if any."""
        ...

    async def token_and_tasks(
        self, token_hash: str, commit_prefix: str, limit: int, now: int
    ) -> tuple[tuple[TokenInfo, str] | None, list[TaskWithCommits]]:
        """The token, and every task of any workflow that built the commit, in one round
        trip; no task unless the token is valid `now` (unrevoked, unexpired)."""
        ...

    async def tasks(
        self, commit_prefix: str, workflows: frozenset[str], limit: int
    ) -> list[TaskWithCommits]:
        """The tasks of these workflows that built the commit."""
        ...

    async def task_detail(self, workflow_name: str, task_id: int) -> TaskDetail | None:
        """The task with its commits, jobs and attempts (TaskStore.detail)."""
        ...
