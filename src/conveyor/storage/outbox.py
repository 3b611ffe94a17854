"""The notification outbox: messages written in the transaction of a task's change of
status, then read, delivered and marked by the server's sender (docs/adr/0013)."""

import uuid
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from conveyor.domain.notifications import GITLAB, CommitFact, NotifyPolicy, TaskFacts
from conveyor.domain.outbox import OutboxEntry
from conveyor.domain.states import JobState, TaskState, public_status
from conveyor.domain.tasks import RefKind
from conveyor.storage.db import Database
from conveyor.storage.tables import hook_deliveries, jobs, outbox, task_commits, tasks

WAITING = "waiting"
DELIVERED = "delivered"
SUPERSEDED = "superseded"
DROPPED = "dropped"


class Outbox:
    """Writes what a task's change tells others, inside the change's transaction."""

    def __init__(self, policy: NotifyPolicy | None) -> None:
        self._policy = policy

    def task_changed(self, conn: Connection, task_pk: int, now: int) -> None:
        policy = self._policy
        if policy is None:
            return
        task = conn.execute(
            sa.select(
                tasks.c.workflow_name,
                tasks.c.task_id,
                tasks.c.attempt,
                tasks.c.state,
                tasks.c.created_by,
                tasks.c.create_time,
                tasks.c.start_time,
                tasks.c.end_time,
            ).where(tasks.c.id == task_pk)
        ).one()
        if not policy.wants(task.workflow_name):
            return
        status = public_status(TaskState(task.state))
        commits = conn.execute(
            sa.select(
                task_commits.c.repo_name,
                task_commits.c.kind,
                task_commits.c.ref,
                task_commits.c.pr,
                task_commits.c.commit_sha,
            )
            .where(task_commits.c.task_pk == task_pk)
            .order_by(task_commits.c.id)
        ).all()
        failed = None
        if task.state in (TaskState.FAILED, TaskState.TIMEOUT):
            failed = conn.execute(
                sa.select(jobs.c.stage, jobs.c.service, jobs.c.detail)
                .where(
                    jobs.c.task_pk == task_pk,
                    jobs.c.attempt == task.attempt,
                    jobs.c.state.in_([JobState.FAILED, JobState.TIMEOUT]),
                )
                .order_by(jobs.c.end_time, jobs.c.id)
                .limit(1)
            ).one_or_none()
        facts = TaskFacts(
            workflow_name=task.workflow_name,
            task_id=task.task_id,
            attempt=task.attempt,
            status=status,
            created_by=task.created_by,
            create_time=task.create_time,
            start_time=task.start_time,
            end_time=task.end_time,
            commits=tuple(
                CommitFact(c.repo_name, RefKind(c.kind), c.ref, c.pr, c.commit_sha) for c in commits
            ),
            failed_job=(failed.stage, failed.service, failed.detail or "") if failed else None,
        )
        rows = [
            {
                "channel": m.channel,
                "key": m.key,
                "coalesce": m.coalesce,
                "url": m.url,
                "event": m.event,
                "delivery_id": m.delivery_id,
                "body": m.body,
                "workflow_name": facts.workflow_name,
                "task_id": facts.task_id,
                "state": WAITING,
                "attempts": 0,
                "create_time": now,
                "next_time": now,
            }
            for m in policy.messages(facts, lambda: str(uuid.uuid4()))
        ]
        if rows:
            conn.execute(outbox.insert(), rows)


NO_OUTBOX = Outbox(None)


def _entry(row: Any) -> OutboxEntry:
    return OutboxEntry(
        id=row.id,
        channel=row.channel,
        key=row.key,
        coalesce=row.coalesce,
        url=row.url,
        event=row.event,
        delivery_id=row.delivery_id,
        body=row.body,
        workflow_name=row.workflow_name,
        task_id=row.task_id,
        state=row.state,
        attempts=row.attempts,
        create_time=row.create_time,
        next_time=row.next_time,
        end_time=row.end_time,
        last_error=row.last_error,
    )


class SqlOutboxStore:
    """The sender's and the operators' side of the outbox."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def waiting(
        self,
        now: int,
        limit: int,
        skip_keys: Collection[str] = (),
        skip_urls: Collection[str] = (),
    ) -> list[OutboxEntry]:
        """Every waiting message of keys with one to send now, in id order: GitLab
        statuses (up to `limit` keys) apart from webhook events (as many), so neither
        can crowd out the other. A status key is due when its latest is (it carries the
        key's backoff); an event key when its oldest is, as events go in order. Keys in
        flight and URLs at their cap are left out, so they take no place."""
        later = outbox.alias("later")
        statuses = (
            sa.select(outbox.c.key)
            .where(outbox.c.state == WAITING, outbox.c.channel == GITLAB)
            .group_by(outbox.c.key)
            .having(sa.func.max(outbox.c.next_time) <= now)
            .order_by(sa.func.min(outbox.c.id))
            .limit(limit)
        )
        older_waits = (
            sa.select(later.c.id)
            .where(later.c.key == outbox.c.key, later.c.state == WAITING, later.c.id < outbox.c.id)
            .exists()
        )
        events = (
            sa.select(outbox.c.key)
            .where(
                outbox.c.state == WAITING,
                outbox.c.channel != GITLAB,
                outbox.c.next_time <= now,
                ~older_waits,
            )
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if skip_keys:
            statuses = statuses.where(outbox.c.key.not_in(list(skip_keys)))
            events = events.where(outbox.c.key.not_in(list(skip_keys)))
        if skip_urls:
            events = events.where(outbox.c.url.not_in(list(skip_urls)))
        with self._db.read() as conn:
            keys = [*conn.execute(statuses).scalars(), *conn.execute(events).scalars()]
            if not keys:
                return []
            rows = conn.execute(
                sa.select(outbox)
                .where(outbox.c.state == WAITING, outbox.c.key.in_(keys))
                .order_by(outbox.c.id)
            )
            return [_entry(r) for r in rows]

    def supersede(
        self, ids: Sequence[int], by: int, attempts: int, next_time: int, now: int
    ) -> None:
        """Messages that message `by` replaces; it takes over their backoff (`attempts`,
        `next_time`), so a newer state of a key GitLab keeps refusing waits its turn."""
        with self._db.write() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(list(ids)), outbox.c.state == WAITING)
                .values(state=SUPERSEDED, end_time=now, last_error=f"superseded by {by}")
            )
            conn.execute(
                outbox.update()
                .where(outbox.c.id == by, outbox.c.state == WAITING)
                .values(attempts=attempts, next_time=next_time)
            )

    def finish(self, msg_id: int, state: str, now: int, error: str | None = None) -> None:
        with self._db.write() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id == msg_id, outbox.c.state == WAITING)
                .values(state=state, end_time=now, last_error=error)
            )

    def retry_later(self, msg_id: int, attempts: int, next_time: int, error: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id == msg_id, outbox.c.state == WAITING)
                .values(attempts=attempts, next_time=next_time, last_error=error)
            )

    def listing(
        self, states: Sequence[str], workflows: frozenset[str] | None, limit: int
    ) -> list[OutboxEntry]:
        stmt = sa.select(outbox).where(outbox.c.state.in_(list(states)))
        if workflows is not None:
            stmt = stmt.where(outbox.c.workflow_name.in_(sorted(workflows)))
        stmt = stmt.order_by(outbox.c.id.desc()).limit(limit)
        with self._db.read() as conn:
            return [_entry(r) for r in conn.execute(stmt)]

    def get(self, msg_id: int) -> OutboxEntry | None:
        with self._db.read() as conn:
            row = conn.execute(sa.select(outbox).where(outbox.c.id == msg_id)).one_or_none()
        return _entry(row) if row is not None else None

    def newer_of_key(self, entry: OutboxEntry) -> int | None:
        """The newest message of `entry`'s key written after it, if any."""
        with self._db.read() as conn:
            found = conn.execute(
                sa.select(sa.func.max(outbox.c.id)).where(
                    outbox.c.key == entry.key, outbox.c.id > entry.id
                )
            ).scalar_one()
        return int(found) if found is not None else None

    def send_again(self, msg_id: int, now: int) -> bool:
        # Its 24 hours of retries start again from now.
        """A dropped (or waiting) message back to waiting, due now; False otherwise."""
        with self._db.write() as conn:
            return bool(
                conn.execute(
                    outbox.update()
                    .where(outbox.c.id == msg_id, outbox.c.state.in_([DROPPED, WAITING]))
                    .values(
                        state=WAITING, attempts=0, next_time=now, end_time=None, create_time=now
                    )
                ).rowcount
            )

    def prune(self, before: int) -> int:
        """Forget messages that ended, and hook deliveries received, before `before`."""
        with self._db.write() as conn:
            ended = conn.execute(
                outbox.delete().where(outbox.c.end_time < before, outbox.c.state != WAITING)
            ).rowcount
            conn.execute(hook_deliveries.delete().where(hook_deliveries.c.receive_time < before))
        return int(ended)
