"""Tasks, their commits, attempts, jobs and the audit log, in SQL."""

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from conveyor.domain.audit import AuditEntry
from conveyor.domain.errors import LostUpdate
from conveyor.domain.states import JobState, TaskState
from conveyor.domain.tasks import RefKind, Task, TaskSpec
from conveyor.domain.views import (
    AttemptView,
    CommitMatch,
    JobView,
    TaskDetail,
    TaskWithCommits,
    WorkflowSummary,
)
from conveyor.storage.db import Database, PreparedQuery, PreparedWrite, prepared_insert
from conveyor.storage.outbox import NO_OUTBOX, Outbox
from conveyor.storage.state_changes import move_job, move_task, pending_jobs
from conveyor.storage.tables import (
    COMMIT_HEAD,
    api_tokens,
    attempts,
    audit_log,
    commit_head,
    hook_deliveries,
    jobs,
    task_commits,
    tasks,
    workflow_sequences,
)

STAGES = ("build", "deploy")


def task_from_row(row: Sequence[Any]) -> Task:
    """A Task from a row that starts with TASK_COLUMNS: a Core row, or a raw tuple of a
    PreparedQuery."""
    pk, workflow, task_id, env, state, attempt, created, started, ended = row[:9]
    return Task(pk, workflow, task_id, env, TaskState(state), attempt, created, started, ended)


# A token's row as token_store.token_of reads it; here because a lookup reads it beside
# its tasks (_lookup_statement).
TOKEN_COLUMNS = (
    api_tokens.c.id,
    api_tokens.c.user_name,
    api_tokens.c.roles,
    api_tokens.c.create_time,
    api_tokens.c.expire_time,
    api_tokens.c.revoke_time,
    api_tokens.c.token_hash,
)
TASK_COLUMNS = (
    tasks.c.id,
    tasks.c.workflow_name,
    tasks.c.task_id,
    tasks.c.env_name,
    tasks.c.state,
    tasks.c.attempt,
    tasks.c.create_time,
    tasks.c.start_time,
    tasks.c.end_time,
)

# A task's detail (the status route every client polls, `conveyor task wait` too): four
# reads with the same parameters, compiled once and run on the driver's connection in
# one snapshot (Database.read_together: about 100 against 500 us through Core).
_DETAIL_PK = (
    sa.select(tasks.c.id)
    .where(
        tasks.c.workflow_name == sa.bindparam("workflow_name"),
        tasks.c.task_id == sa.bindparam("task_id"),
    )
    .scalar_subquery()
)
_DETAIL_TASK = sa.select(*TASK_COLUMNS, tasks.c.created_by).where(tasks.c.id == _DETAIL_PK)
_DETAIL_COMMITS = (
    sa.select(
        task_commits.c.service,
        task_commits.c.repo_name,
        task_commits.c.kind,
        task_commits.c.ref,
        task_commits.c.commit_sha,
    )
    .where(task_commits.c.task_pk == _DETAIL_PK)
    .order_by(task_commits.c.id)
)
_DETAIL_JOBS = (  # JobView's fields, in order
    sa.select(
        jobs.c.id,
        jobs.c.attempt,
        jobs.c.stage,
        jobs.c.service,
        jobs.c.state,
        jobs.c.start_time,
        jobs.c.end_time,
        jobs.c.exit_code,
        jobs.c.detail,
    )
    .where(jobs.c.task_pk == _DETAIL_PK)
    .order_by(jobs.c.id)
)
_DETAIL_ATTEMPTS = (  # AttemptView's fields, in order
    sa.select(
        attempts.c.number,
        attempts.c.requested_by,
        attempts.c.create_time,
        attempts.c.start_time,
        attempts.c.end_time,
        attempts.c.state,
    )
    .where(attempts.c.task_pk == _DETAIL_PK)
    .order_by(attempts.c.number)
)
_NEXT_TASK_ID = {
    name: dialect.insert(workflow_sequences)
    .values(workflow_name=sa.bindparam("name"), last_task_id=1)
    .on_conflict_do_update(
        index_elements=[workflow_sequences.c.workflow_name],
        set_={"last_task_id": workflow_sequences.c.last_task_id + 1},
    )
    .returning(workflow_sequences.c.last_task_id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def latest_jobs(
    task_pk: int | sa.BindParameter[int], *columns: sa.ColumnElement[Any]
) -> sa.Select[Any]:
    """`columns` of the latest row of each (stage, service) of a task: the jobs its status
    is made of, since a restart adds rows only for the jobs that did not pass."""
    latest = (
        sa.select(jobs.c.stage, jobs.c.service, sa.func.max(jobs.c.attempt).label("attempt"))
        .where(jobs.c.task_pk == task_pk)
        .group_by(jobs.c.stage, jobs.c.service)
        .subquery()
    )
    return (
        sa.select(*columns)
        .join(
            latest,
            sa.and_(
                jobs.c.stage == latest.c.stage,
                jobs.c.service == latest.c.service,
                jobs.c.attempt == latest.c.attempt,
            ),
        )
        .where(jobs.c.task_pk == task_pk)
    )


class SqlTaskWriter:
    def __init__(self, conn: Connection, outbox: Outbox) -> None:
        self._conn = conn
        self._outbox = outbox
        self._dialect = conn.dialect.name

    def next_task_id(self, workflow_name: str) -> int:
        # One statement that both creates and bumps the counter: concurrent creates queue
        # on its row lock, and a rolled-back create gives its number back.
        upsert = _next_task_id(self._conn.dialect)
        return int(upsert.returned_row(self._conn, {"name": workflow_name})[0])

    def add_task(
        self,
        *,
        task_id: int,
        spec: TaskSpec,
        created_by: str,
        create_time: int,
        trigger_key: str | None = None,
    ) -> Task:
        values = {
            "workflow_name": spec.workflow_name,
            "task_id": task_id,
            "env_name": spec.env_name,
            "state": TaskState.QUEUED,
            "attempt": 1,
            "create_time": create_time,
            "created_by": created_by,
            "spec": spec.to_json(),
            "trigger_key": trigger_key,
        }
        insert = prepared_insert(self._conn.dialect, tasks, tuple(values), TASK_COLUMNS)
        task = task_from_row(insert.returned_row(self._conn, values))
        pk = task.pk
        commit_rows = [
            {
                "task_pk": pk,
                "service": target.service,
                "repo_name": repo.repo_name,
                "kind": kind,
                "ref": ref,
                "pr": repo.pr,
                "commit_sha": commit,
            }
            for target in spec.targets
            for repo in target.repos
            for kind, ref, commit in repo.commits()
        ]
        _insert_many(self._conn, task_commits, commit_rows)
        self.add_attempt(task, created_by, create_time)
        job_rows: list[dict[str, Any]] = [
            {
                "task_pk": pk,
                "attempt": 1,
                "stage": stage,
                "service": target.service,
                "state": JobState.PENDING,
            }
            for stage in STAGES
            for target in spec.targets
        ]
        _insert_many(self._conn, jobs, job_rows)
        self._outbox.task_changed(self._conn, task.pk, create_time)
        return task

    def claim_delivery(self, delivery: str, now: int) -> bool:
        # Inserted first: a concurrent redelivery waits on this row's key, then inserts
        # nothing and creates nothing.
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        stmt = (
            insert(hook_deliveries)
            .values(id=delivery, receive_time=now)
            .on_conflict_do_nothing(index_elements=[hook_deliveries.c.id])
            # RETURNING, not rowcount: psycopg reports -1 for this statement.
            .returning(hook_deliveries.c.id)
        )
        return self._conn.execute(stmt).first() is not None

    def record_delivery(self, delivery: str, tasks: list[tuple[str, int]]) -> None:
        self._conn.execute(
            hook_deliveries.update()
            .where(hook_deliveries.c.id == delivery)
            .values(tasks=[list(t) for t in tasks])
        )

    def active_tasks_with_trigger(self, workflow_name: str, trigger_key: str) -> list[Task]:
        stmt = (
            sa.select(*TASK_COLUMNS)
            .where(
                tasks.c.workflow_name == workflow_name,
                tasks.c.trigger_key == trigger_key,
                tasks.c.state.in_([TaskState.QUEUED, TaskState.RUNNING]),
            )
            .order_by(tasks.c.id)
        )
        if self._dialect == "postgresql":
            stmt = stmt.with_for_update()
        return [task_from_row(r) for r in self._conn.execute(stmt)]

    def get_task(self, workflow_name: str, task_id: int) -> Task | None:
        stmt = sa.select(*TASK_COLUMNS).where(
            tasks.c.workflow_name == workflow_name, tasks.c.task_id == task_id
        )
        if self._dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = self._conn.execute(stmt).one_or_none()
        return task_from_row(row) if row is not None else None

    def move_task(
        self, task: Task, target: TaskState, now: int, *, attempt: int | None = None
    ) -> Task:
        if not move_task(self._conn, task, target, now, self._outbox, attempt=attempt):
            raise LostUpdate(
                f"task {task.workflow_name}#{task.task_id} changed meanwhile; try again"
            )
        row = self._conn.execute(sa.select(*TASK_COLUMNS).where(tasks.c.id == task.pk)).one()
        return task_from_row(row)

    def add_attempt(self, task: Task, requested_by: str, create_time: int) -> None:
        row = {"task_pk": task.pk, "number": task.attempt, "requested_by": requested_by,
               "create_time": create_time}  # fmt: skip
        prepared_insert(self._conn.dialect, attempts, tuple(row)).run(self._conn, row)

    def cancel_pending_jobs(self, task: Task, now: int) -> None:
        for job_id in pending_jobs(self._conn, task):
            move_job(
                self._conn,
                job_id,
                JobState.PENDING,
                JobState.CANCELLED,
                now,
                detail="cancelled before it ran",
            )

    def add_jobs_to_rerun(self, task: Task) -> int:
        rows = self._conn.execute(
            latest_jobs(task.pk, jobs.c.stage, jobs.c.service).where(
                jobs.c.state != JobState.PASSED
            )
        ).all()
        job_rows: list[dict[str, Any]] = [
            {
                "task_pk": task.pk,
                "attempt": task.attempt,
                "stage": row.stage,
                "service": row.service,
                "state": JobState.PENDING,
            }
            for row in rows
        ]
        _insert_many(self._conn, jobs, job_rows)
        return len(rows)

    def audit(self, entry: AuditEntry, time: int) -> None:
        write_audit(self._conn, entry, time)


def write_audit(conn: Connection, entry: AuditEntry, time: int) -> None:
    row = {
        "time": time,
        "actor": entry.actor,
        "token_id": entry.token_id,
        "action": entry.action,
        "workflow_name": entry.workflow_name,
        "task_id": entry.task_id,
        "detail": entry.detail,
    }
    prepared_insert(conn.dialect, audit_log, tuple(row)).run(conn, row)


def _insert_many(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """INSERT `rows` (each with the same keys) into `table` (PreparedWrite)."""
    if rows:
        prepared_insert(conn.dialect, table, tuple(rows[0])).run_many(conn, rows)


@functools.lru_cache(maxsize=8)
def _next_task_id(dialect: sa.Dialect) -> PreparedWrite:
    return PreparedWrite(_NEXT_TASK_ID[dialect.name], dialect)


def commit_matching(
    lo: sa.ColumnElement[str], hi: sa.ColumnElement[str], head: sa.ColumnElement[str] | None
) -> sa.ColumnElement[bool]:
    """task_commits rows whose commit is `lo` (no `head`), or starts with the prefix `lo`
    of at least COMMIT_HEAD digits, `head` being its first COMMIT_HEAD."""
    sha = task_commits.c.commit_sha
    if head is None:
        return sha == lo
    # Every id that starts with a hex prefix sorts in [prefix, prefix + "g"); the
    # equality on its head is what a generic plan can see is selective (tables.py).
    return sa.and_(commit_head(sha) == head, sha >= lo, sha < hi)


def _lookup_statement(exact: bool, n_workflows: int | None, with_token: bool) -> sa.Select[Any]:
    """Tasks pinning a matching commit, newest first, with those commits: one round trip.
    `with_token`: each row starts with the token's (TOKEN_COLUMNS), which is read in the
    same statement; see lookups_with_token.

    Built once per shape with bind parameters, so SQLAlchemy neither rebuilds the
    statement nor recomputes its cache key on every lookup (the hot path of the GET).
    """
    head = None if exact else sa.bindparam("head", type_=sa.String)
    matching = commit_matching(sa.bindparam("lo"), sa.bindparam("hi"), head)
    found = sa.select(*TASK_COLUMNS).where(
        tasks.c.id.in_(sa.select(task_commits.c.task_pk).where(matching))
    )
    if n_workflows is not None:
        # One placeholder per workflow (wf0, wf1, ...), so the SQL text is fixed per count.
        names: list[sa.BindParameter[str]] = [
            sa.bindparam(f"wf{i}", type_=sa.String) for i in range(n_workflows)
        ]
        found = found.where(tasks.c.workflow_name.in_(names))
    if with_token:
        # Read beside the token, before it is checked: rows only for a token that is
        # valid, so a stranger's request costs one index probe, not a lookup.
        found = found.where(
            sa.exists().where(
                api_tokens.c.token_hash == sa.bindparam("token_hash"),
                api_tokens.c.revoke_time.is_(None),
                sa.or_(
                    api_tokens.c.expire_time.is_(None),
                    api_tokens.c.expire_time > sa.bindparam("now"),
                ),
            )
        )
    hits = (
        found.order_by(tasks.c.create_time.desc(), tasks.c.id.desc())
        .limit(sa.bindparam("limit"))
        .cte("hits")
    )
    commits = (
        task_commits.c.service,
        task_commits.c.repo_name,
        task_commits.c.kind,
        task_commits.c.ref,
        task_commits.c.commit_sha,
    )
    order = (hits.c.create_time.desc(), hits.c.id.desc(), task_commits.c.id)
    if not with_token:
        return (
            sa.select(hits, *commits)
            .join(task_commits, task_commits.c.task_pk == hits.c.id)
            .where(matching)
            .order_by(*order)
        )
    # The token's row, then the hits beside it: no row at all for an unknown token, one
    # with no task for a token that finds none (or that is not valid).
    token = api_tokens.alias("token")
    return (
        sa.select(*(token.c[c.name] for c in TOKEN_COLUMNS), hits, *commits)
        .select_from(
            token.outerjoin(hits, sa.true()).outerjoin(
                task_commits, sa.and_(task_commits.c.task_pk == hits.c.id, matching)
            )
        )
        .where(token.c.token_hash == sa.bindparam("token_hash"))
        .order_by(*order)
    )


def lookups_with_token(
    rows: list[tuple[Any, ...]],
) -> tuple[list[tuple[Any, ...]], list[TaskWithCommits]]:
    """The token's rows as token_store.token_of reads them (none for an unknown token)
    and the tasks found, from the rows of SqlTaskStore.by_commit with a token."""
    width = len(TOKEN_COLUMNS)
    token = [row[:width] for row in rows[:1]]
    return token, lookups_of([r[width:] for r in rows if r[width] is not None])


def lookups_of(rows: list[tuple[Any, ...]]) -> list[TaskWithCommits]:
    """The tasks found, newest first, from the rows of SqlTaskStore.by_commit."""
    found: dict[int, tuple[Task, list[CommitMatch]]] = {}
    for row in rows:
        entry = found.get(row[0])
        if entry is None:
            entry = found[row[0]] = (task_from_row(row), [])
        svc, repo, kind, ref, sha = row[9:]
        entry[1].append(CommitMatch(svc, repo, RefKind(kind), ref, sha))
    return [TaskWithCommits(task=t, matches=tuple(m)) for t, m in found.values()]


class SqlTaskStore:
    def __init__(self, db: Database, outbox: Outbox = NO_OUTBOX) -> None:
        self._db = db
        self._outbox = outbox
        # Compiled once per (exact id or prefix, how many workflows the caller may view,
        # whether a token must be valid for any row).
        self._lookups: dict[tuple[bool, int | None, bool], PreparedQuery] = {}
        details = (_DETAIL_TASK, _DETAIL_COMMITS, _DETAIL_JOBS, _DETAIL_ATTEMPTS)
        # A task's detail: four reads of detail_params, whose rows detail_of makes one.
        self.detail_reads = [PreparedQuery(stmt, db.engine.dialect) for stmt in details]

    def _lookup(self, exact: bool, n_workflows: int | None, gated: bool) -> PreparedQuery:
        key = (exact, n_workflows, gated)
        query = self._lookups.get(key)
        if query is None:
            stmt = _lookup_statement(*key)
            query = self._lookups[key] = PreparedQuery(stmt, self._db.engine.dialect)
        return query

    @contextmanager
    def write(self) -> Iterator[SqlTaskWriter]:
        with self._db.write() as conn:
            yield SqlTaskWriter(conn, self._outbox)

    def delivery_tasks(self, delivery: str) -> list[tuple[str, int]] | None:
        with self._db.read() as conn:
            found = conn.execute(
                sa.select(hook_deliveries.c.tasks).where(hook_deliveries.c.id == delivery)
            ).one_or_none()
        if found is None:
            return None
        return [(wf, task_id) for wf, task_id in found.tasks or []]

    def workflow_summaries(self, names: list[str]) -> list[WorkflowSummary]:
        with self._db.read() as conn:
            # One probe of the (workflow_name, task_id) index per workflow: a max() over
            # a GROUP BY would scan every task.
            latest = {}
            for name in names:
                row = conn.execute(
                    sa.select(*TASK_COLUMNS)
                    .where(tasks.c.workflow_name == name)
                    .order_by(tasks.c.task_id.desc())
                    .limit(1)
                ).one_or_none()
                if row is not None:
                    latest[name] = task_from_row(row)
            counts = conn.execute(
                sa.select(tasks.c.workflow_name, tasks.c.state, sa.func.count())
                .where(
                    tasks.c.workflow_name.in_(names),
                    tasks.c.state.in_([TaskState.QUEUED, TaskState.RUNNING, TaskState.CANCELLING]),
                )
                .group_by(tasks.c.workflow_name, tasks.c.state)
            ).all()
        running: dict[str, int] = {}
        waiting: dict[str, int] = {}
        for name, state, n in counts:
            into = waiting if state == TaskState.QUEUED else running
            into[name] = into.get(name, 0) + n
        return [
            WorkflowSummary(n, latest.get(n), running.get(n, 0), waiting.get(n, 0)) for n in names
        ]

    def list_tasks(
        self,
        workflow_name: str,
        limit: int,
        before: int | None,
        states: list[TaskState] | None,
        branch: str | None,
        commit_prefix: str | None,
    ) -> list[TaskWithCommits]:
        stmt = sa.select(*TASK_COLUMNS).where(tasks.c.workflow_name == workflow_name)
        if before is not None:
            stmt = stmt.where(tasks.c.task_id < before)
        if states is not None:
            stmt = stmt.where(tasks.c.state.in_([s.value for s in states]))
        if branch is not None:
            stmt = stmt.where(
                tasks.c.id.in_(
                    sa.select(task_commits.c.task_pk).where(
                        task_commits.c.kind == RefKind.BRANCH, task_commits.c.ref == branch
                    )
                )
            )
        if commit_prefix is not None:
            lo, hi = sa.literal(commit_prefix), sa.literal(commit_prefix + "g")
            head = sa.literal(commit_prefix[:COMMIT_HEAD])
            stmt = stmt.where(
                tasks.c.id.in_(
                    sa.select(task_commits.c.task_pk).where(commit_matching(lo, hi, head))
                )
            )
        stmt = stmt.order_by(tasks.c.task_id.desc()).limit(limit)
        with self._db.read() as conn:
            found = [task_from_row(r) for r in conn.execute(stmt)]
            commits: dict[int, list[CommitMatch]] = {t.pk: [] for t in found}
            if found:
                rows = conn.execute(
                    sa.select(task_commits)
                    .where(task_commits.c.task_pk.in_(list(commits)))
                    .order_by(task_commits.c.id)
                )
                for c in rows:
                    commits[c.task_pk].append(
                        CommitMatch(c.service, c.repo_name, RefKind(c.kind), c.ref, c.commit_sha)
                    )
        return [TaskWithCommits(task=t, matches=tuple(commits[t.pk])) for t in found]

    def find_by_commit(
        self, commit_prefix: str, workflows: frozenset[str] | None, limit: int
    ) -> list[TaskWithCommits]:
        return lookups_of(self._db.read_rows(*self.by_commit(commit_prefix, workflows, limit)))

    def by_commit(
        self,
        commit_prefix: str,
        workflows: frozenset[str] | None,
        limit: int,
        token: tuple[str, int] | None = None,
    ) -> tuple[PreparedQuery, dict[str, Any]]:
        """The read behind find_by_commit, for a caller that runs it itself (lookups_of).
        With `token` (its hash, and the time now): the token's row too, and tasks only if
        that token is valid (lookups_with_token)."""
        exact = len(commit_prefix) == 40
        params: dict[str, Any] = {"lo": commit_prefix, "limit": limit}
        if not exact:
            params.update(hi=commit_prefix + "g", head=commit_prefix[:COMMIT_HEAD])
        n_workflows = None
        if workflows is not None:
            n_workflows = len(workflows)
            params.update({f"wf{i}": name for i, name in enumerate(sorted(workflows))})
        if token is not None:
            params.update(token_hash=token[0], now=token[1])
        return self._lookup(exact, n_workflows, token is not None), params

    def detail(self, workflow_name: str, task_id: int) -> TaskDetail | None:
        found = self._db.read_together(self.detail_reads, detail_params(workflow_name, task_id))
        return detail_of(found)


def detail_params(workflow_name: str, task_id: int) -> dict[str, Any]:
    """The parameters of SqlTaskStore.detail_reads."""
    return {"workflow_name": workflow_name, "task_id": task_id}


def detail_of(found: Sequence[Sequence[tuple[Any, ...]]]) -> TaskDetail | None:
    """The detail from the rows of SqlTaskStore.detail_reads, in their order."""
    task_rows, commits, job_rows, attempt_rows = found
    if not task_rows:
        return None
    row = task_rows[0]
    return TaskDetail(
        task=task_from_row(row),
        created_by=row[len(TASK_COLUMNS)],
        commits=tuple(
            CommitMatch(service, repo, RefKind(kind), ref, sha)
            for service, repo, kind, ref, sha in commits
        ),
        jobs=tuple(JobView(*j) for j in job_rows),
        attempts=tuple(AttemptView(*a) for a in attempt_rows),
    )
