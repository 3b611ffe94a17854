"""One place changes state: tasks and their attempt rows move together, every job move
is checked by transition(), and a lost update is a conflict, never a crash."""

import re
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.domain.errors import LostUpdate, StateConflict
from conveyor.domain.principals import Principal
from conveyor.domain.states import TaskState
from conveyor.domain.tasks import RepoRequest
from conveyor.services.tasks import CreateRequest, TargetRequest
from conveyor.storage.tables import attempts, jobs
from conveyor.storage.task_store import SqlTaskStore
from conveyor.wiring import Container
from tests.fixtures import WF

SRC = Path(__file__).parents[2] / "src" / "conveyor"
ADMIN = Principal(user="alice", roles=("admin",))


def create(container: Container) -> int:
    request = CreateRequest(WF, "dev", (TargetRequest("web", (RepoRequest("dyliu", "main"),)),))
    return container.tasks.create(ADMIN, request).task_id


def test_cancelling_a_queued_task_ends_its_attempt_and_its_jobs(container: Container) -> None:
    task_id = create(container)
    container.tasks.cancel(ADMIN, WF, task_id)
    with container.db.read() as conn:
        attempt = conn.execute(sa.select(attempts)).one()
        job_rows = conn.execute(sa.select(jobs.c.state, jobs.c.end_time, jobs.c.detail)).all()
    assert (attempt.state, attempt.end_time is not None) == ("cancelled", True)
    assert {(j.state, j.detail) for j in job_rows} == {("cancelled", "cancelled before it ran")}
    assert all(j.end_time == attempt.end_time for j in job_rows)


def test_a_restart_while_the_old_attempt_stops_closes_that_attempt(container: Container) -> None:
    task_id = create(container)
    store = SqlTaskStore(container.db)
    with store.write() as tx:
        task = tx.get_task(WF, task_id)
        assert task is not None
        running = tx.move_task(task, TaskState.RUNNING, 100)
        tx.move_task(running, TaskState.CANCELLING, 101)
    container.tasks.restart(ADMIN, WF, task_id)
    with container.db.read() as conn:
        rows = conn.execute(
            sa.select(attempts.c.number, attempts.c.state, attempts.c.start_time).order_by(
                attempts.c.number
            )
        ).all()
    assert [(r.number, r.state) for r in rows] == [(1, "cancelled"), (2, None)]
    assert rows[0].start_time == 100


def test_a_lost_update_is_a_conflict_not_a_crash(container: Container) -> None:
    task_id = create(container)
    store = SqlTaskStore(container.db)
    with store.write() as tx:
        stale = tx.get_task(WF, task_id)
    assert stale is not None
    container.tasks.cancel(ADMIN, WF, task_id)  # another writer got there first
    with pytest.raises(LostUpdate) as info, store.write() as tx:
        tx.move_task(replace(stale), TaskState.RUNNING, 1)
    assert isinstance(info.value, StateConflict)  # the API's 409 "task state conflict"
    assert "changed meanwhile; try again" in info.value.detail


def test_no_module_but_state_changes_updates_a_state() -> None:
    """New rows start in their first state anywhere; a change of a task's or a job's
    state happens here (the outbox's delivery states are its own)."""
    update_of_state = re.compile(
        r"\b(tasks|jobs|attempts)\.update\(\)[^;]{0,300}?\.values\([^)]*\bstate="
    )
    # state_changes writes through one helper of its own, by bind parameters.
    helper = re.compile(r"\b_update\(conn, (tasks|jobs|attempts), ")

    def modules(pattern: re.Pattern[str]) -> list[str]:
        return [
            path.relative_to(SRC).as_posix()
            for path in SRC.rglob("*.py")
            if pattern.search(path.read_text()) and "migrations" not in path.parts
        ]

    assert modules(update_of_state) == []
    assert modules(helper) == ["storage/state_changes.py"]
