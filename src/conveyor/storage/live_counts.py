"""What is waiting and running now, counted in the database (the source of truth) when
Prometheus scrapes: each query reads an index, whatever the number of stored tasks."""

from dataclasses import dataclass

import sqlalchemy as sa

from conveyor.domain.states import JobState, TaskState
from conveyor.storage.db import Database
from conveyor.storage.tables import jobs, outbox, tasks

LIVE_TASK_STATES = (TaskState.QUEUED, TaskState.RUNNING, TaskState.CANCELLING)


@dataclass(frozen=True, slots=True)
class LiveCounts:
    tasks: dict[tuple[str, str], int]
    """(workflow, task state) -> tasks, for the states not yet ended."""
    jobs: dict[tuple[str, str, str], int]
    """(job state, service, stage) -> jobs queued or running."""
    oldest_heartbeat: int | None
    """The heartbeat time of the running job that beat longest ago, if any runs."""
    notifications_waiting: int


def live_counts(db: Database) -> LiveCounts:
    live_jobs = [JobState.QUEUED.value, JobState.RUNNING.value]
    with db.read() as conn:
        task_rows = conn.execute(
            sa.select(tasks.c.workflow_name, tasks.c.state, sa.func.count())
            .where(tasks.c.state.in_([s.value for s in LIVE_TASK_STATES]))
            .group_by(tasks.c.workflow_name, tasks.c.state)
        ).all()
        job_rows = conn.execute(
            sa.select(jobs.c.state, jobs.c.service, jobs.c.stage, sa.func.count())
            .where(jobs.c.state.in_(live_jobs))
            .group_by(jobs.c.state, jobs.c.service, jobs.c.stage)
        ).all()
        oldest = conn.execute(
            sa.select(sa.func.min(jobs.c.heartbeat_time)).where(
                jobs.c.state == JobState.RUNNING.value
            )
        ).scalar_one()
        waiting = conn.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.state == "waiting")
        ).scalar_one()
    return LiveCounts(
        tasks={(w, s): int(n) for w, s, n in task_rows},
        jobs={(s, svc, stage): int(n) for s, svc, stage, n in job_rows},
        oldest_heartbeat=int(oldest) if oldest is not None else None,
        notifications_waiting=int(waiting),
    )
