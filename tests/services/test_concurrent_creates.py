"""Concurrent creates on one workflow get distinct, consecutive ids, with no gaps."""

import threading
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from conveyor.domain.errors import InvalidParam
from conveyor.domain.tasks import Principal, RepoRequest
from conveyor.services.tasks import CreateRequest, TargetRequest
from conveyor.storage.tables import tasks
from conveyor.wiring import Container
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
