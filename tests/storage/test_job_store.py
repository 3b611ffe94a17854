"""The scheduler's writes: a task's start queues its builds in the same transaction."""

import pytest
import sqlalchemy as sa

from conveyor.domain.principals import Principal
from conveyor.domain.states import JobState, TaskState
from conveyor.domain.tasks import RepoRequest
from conveyor.services.tasks import CreateRequest, TargetRequest
from conveyor.storage import job_store
from conveyor.storage.job_store import SqlJobStore
from conveyor.storage.tables import jobs, tasks
from conveyor.wiring import Container
from tests.fixtures import WF

ADMIN = Principal(user="alice", roles=("admin",))


@pytest.fixture(autouse=True)
def _one_queued_task(container: Container) -> None:
    request = CreateRequest(WF, "dev", (TargetRequest("web", (RepoRequest("dyliu", "main"),)),))
    container.tasks.create(ADMIN, request)


def states(container: Container) -> tuple[str, list[tuple[str, str]]]:
    with container.db.read() as conn:
        task = conn.execute(sa.select(tasks.c.state)).scalar_one()
        rows = conn.execute(sa.select(jobs.c.stage, jobs.c.state).order_by(jobs.c.id)).all()
    return task, [(stage, state) for stage, state in rows]


def test_starting_a_task_queues_its_builds_with_it(container: Container) -> None:
    store = SqlJobStore(container.db)
    [task] = store.tasks_in(TaskState.QUEUED)
    queued = store.start_task(task, 100)
    assert queued is not None
    assert [(j.stage, j.state) for j in queued] == [("build", JobState.QUEUED)]
    assert states(container) == ("running", [("build", "queued"), ("deploy", "pending")])
    # The same queued task read before: someone else started it; nothing more is queued.
    assert store.start_task(task, 101) is None


def test_a_start_that_fails_half_way_leaves_the_task_queued_and_its_builds_pending(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlJobStore(container.db)
    [task] = store.tasks_in(TaskState.QUEUED)

    def disk_full(*_: object, **__: object) -> bool:
        raise OSError("database or disk is full")

    monkeypatch.setattr(job_store, "move_job", disk_full)
    with pytest.raises(OSError):
        store.start_task(task, 100)
    assert states(container) == ("queued", [("build", "pending"), ("deploy", "pending")])


def test_a_task_read_before_it_ended_and_was_restarted_is_not_ended_again(
    container: Container,
) -> None:
    store = SqlJobStore(container.db)
    [task] = store.tasks_in(TaskState.QUEUED)
    assert store.start_task(task, 100) is not None
    [stale] = store.tasks_in(TaskState.RUNNING)  # attempt 1, as one thread read it
    assert store.finish_task(stale, TaskState.FAILED, 101)  # another thread ends it
    container.tasks.restart(ADMIN, WF, stale.task_id)
    [again] = store.tasks_in(TaskState.QUEUED)
    assert store.start_task(again, 102) is not None  # attempt 2 runs, in the same state
    assert not store.finish_task(stale, TaskState.FAILED, 103)
    assert states(container)[0] == "running"
