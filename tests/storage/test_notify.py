"""PostgreSQL tells the server when a job result is committed, and only then, naming the
job's task."""

import queue

import pytest

from conveyor.domain.jobs import JobResult, Outcome
from conveyor.storage.db import Database
from conveyor.storage.job_store import SqlJobStore
from conveyor.storage.notify import CHANNEL, JobListener, notify_in, task_named
from tests.conftest import PG_URL
from tests.storage.conftest import a_running_job

pytestmark = pytest.mark.skipif(
    not PG_URL, reason="LISTEN/NOTIFY is PostgreSQL's; on SQLite the scheduler polls"
)


class Boom(Exception):
    pass


def test_a_committed_result_wakes_the_listener_for_its_task_and_a_rolled_back_one_does_not(
    database: Database,
) -> None:
    task_pk, job_id = a_running_job(database)
    woken: queue.Queue[int | None] = queue.Queue()
    listener = JobListener(database.engine.url.render_as_string(hide_password=False), woken.put)
    listener.start()
    try:
        # Once when it starts listening, for every task: it may have missed some.
        assert woken.get(timeout=10) is None
        with pytest.raises(Boom), database.write() as conn:
            notify_in(conn, job_id)
            raise Boom
        with database.write() as conn:
            notify_in(conn, job_id)
        # The rolled-back one would have come first: the next is the committed one.
        assert woken.get(timeout=5) == task_pk
        assert woken.empty()
    finally:
        listener.stop()


def test_a_result_whose_next_step_is_taken_with_it_wakes_no_listener(
    database: Database,
) -> None:
    """The local executor's: the step is taken in the result's own transaction, so no
    server needs telling. A worker's result (no step) is told."""
    store = SqlJobStore(database)
    local_task, local_job = a_running_job(database)
    worker_task, worker_job = a_running_job(database, task_id=2)
    woken: queue.Queue[int | None] = queue.Queue()
    listener = JobListener(database.engine.url.render_as_string(hide_password=False), woken.put)
    listener.start()
    try:
        assert woken.get(timeout=10) is None
        passed = JobResult(Outcome.PASSED, 0, "ok")
        assert store.finish_job(local_job, passed, 1, then=lambda tx: None)
        assert store.finish_job(worker_job, passed, 1)
        assert woken.get(timeout=5) == worker_task != local_task
        assert woken.empty()
    finally:
        listener.stop()


def test_a_notification_naming_no_task_wakes_the_listener_for_every_task(
    database: Database,
) -> None:
    """What a worker of an earlier version sends."""
    woken: queue.Queue[int | None] = queue.Queue()
    listener = JobListener(database.engine.url.render_as_string(hide_password=False), woken.put)
    listener.start()
    try:
        assert woken.get(timeout=10) is None
        with database.write() as conn:
            conn.exec_driver_sql(f"NOTIFY {CHANNEL}")
        assert woken.get(timeout=5) is None
    finally:
        listener.stop()


@pytest.mark.parametrize("payload", ["", "²", "x1", "1.5"])
def test_a_notification_that_names_no_task_asks_for_every_task(payload: str) -> None:
    """Anyone with a connection may notify on the channel: the listener never dies of it."""
    assert task_named(payload) is None
    assert task_named("42") == 42
