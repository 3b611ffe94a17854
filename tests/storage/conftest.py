"""What the storage tests share: a running job to write for."""

import pytest

from conveyor.storage.db import Database
from conveyor.storage.tables import jobs, tasks


def a_running_job(database: Database, task_id: int = 1) -> tuple[int, int]:
    """(task pk, job id) of a new task (workflow "wf", `task_id`) with one running job."""
    with database.write() as conn:
        task_pk = conn.execute(
            tasks.insert()
            .values(
                workflow_name="wf",
                task_id=task_id,
                env_name="dev",
                state="running",
                attempt=1,
                create_time=0,
                created_by="t",
                spec={},
            )
            .returning(tasks.c.id)
        ).scalar_one()
        job_id = conn.execute(
            jobs.insert()
            .values(task_pk=task_pk, attempt=1, stage="build", service="s", state="running")
            .returning(jobs.c.id)
        ).scalar_one()
    return int(task_pk), int(job_id)


@pytest.fixture
def job_id(database: Database) -> int:
    return a_running_job(database)[1]
