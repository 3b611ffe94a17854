"""Concurrent creates on one workflow get distinct, consecutive ids, with no gaps, and
creation times in the order of their ids; the scheduler takes them first in, first out."""

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from conveyor.domain.errors import InvalidParam
from conveyor.domain.principals import Principal
from conveyor.domain.states import TaskState
from conveyor.domain.tasks import RepoRequest
from conveyor.services.tasks import CreateRequest, TargetRequest
from conveyor.settings import Config
from conveyor.storage.db import Database
from conveyor.storage.job_store import SqlJobStore
from conveyor.storage.tables import tasks
from conveyor.wiring import Container, build_container
from tests.fixtures import WF

ADMIN = Principal(user="alice", roles=("admin",))


def request(branch: str = "main") -> CreateRequest:
    return CreateRequest(
        workflow_name=WF,
        env_name="dev",
        targets=(TargetRequest("web", (RepoRequest("dyliu", branch),)),),
    )


def test_concurrent_creates_get_distinct_consecutive_ids(container: Container) -> None:
    n = 24
    start = threading.Barrier(n)

    def create(i: int) -> int | str:
        start.wait()
        # Every third request names a branch that does not exist: it must use no id.
        try:
            return container.tasks.create(ADMIN, request("main" if i % 3 else "gone")).task_id
        except InvalidParam as exc:
            return exc.detail

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(create, range(n)))
    ids = sorted(r for r in results if isinstance(r, int))
    rejected = [r for r in results if isinstance(r, str)]
    assert len(rejected) == n // 3
    assert ids == list(range(1, n - n // 3 + 1))
    with container.db.read() as conn:
        stored = conn.execute(sa.select(tasks.c.task_id).order_by(tasks.c.task_id)).scalars().all()
    assert stored == ids


def test_creation_times_follow_task_ids_under_a_burst(config: Config, database: Database) -> None:
    """The clock is read inside the transaction that allocates the id: a request that read
    the time first but stored its task second must not get the earlier time."""
    ticks = itertools.count(1000)
    a_has_the_time = threading.Event()
    b_done = threading.Event()

    def clock() -> int:
        now = next(ticks)
        if threading.current_thread().name == "a":
            a_has_the_time.set()
            # Before the fix, B stores its task meanwhile; after it, B waits for A's
            # transaction, so this wait runs out and A commits first.
            b_done.wait(1.0)
        return now

    container = build_container(config, db=database, clock=clock)

    def create_b() -> None:
        a_has_the_time.wait(10)
        container.tasks.create(ADMIN, request())
        b_done.set()

    a = threading.Thread(target=container.tasks.create, args=(ADMIN, request()), name="a")
    b = threading.Thread(target=create_b, name="b")
    a.start()
    b.start()
    a.join(30)
    b.join(30)
    with container.db.read() as conn:
        rows = conn.execute(
            sa.select(tasks.c.task_id, tasks.c.create_time).order_by(tasks.c.task_id)
        ).all()
    assert [r.task_id for r in rows] == [1, 2]
    assert rows[0].create_time < rows[1].create_time


def test_the_scheduler_takes_queued_tasks_by_id_even_if_the_clock_stepped_back(
    config: Config, database: Database
) -> None:
    times = iter([2000, 1000, 1500])
    container = build_container(config, db=database, clock=lambda: next(times))
    for _ in range(3):
        container.tasks.create(ADMIN, request())
    queued = SqlJobStore(database).tasks_in(TaskState.QUEUED)
    assert [t.task_id for t in queued] == [1, 2, 3]
    assert [t.create_time for t in queued] == [2000, 1000, 1500]
    second_page = SqlJobStore(database).tasks_in(TaskState.QUEUED, after=queued[0].pk)
    assert [t.task_id for t in second_page] == [2, 3]
