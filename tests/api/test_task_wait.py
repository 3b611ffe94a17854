"""GET /api/workflows/{name}/tasks/{id}?wait=S: the answer comes when the task ends."""

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from conveyor.storage import async_reads
from conveyor.wiring import Container
from tests.conftest import PG_URL, drop_connections
from tests.fixtures import WF, Headers, create_body

CREATE = "/api/directory/workflowTask/create"
DETAIL = f"/api/workflows/{WF}/tasks/1"


@pytest.fixture
def task(client: TestClient, admin: Headers) -> Iterator[int]:
    r = client.post(CREATE, json=create_body(), headers=admin)
    assert r.status_code == 200
    yield r.json()["task_id"]


def until(condition: object, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


def test_a_waiting_request_answers_when_the_task_ends(
    client: TestClient, admin: Headers, task: int, container: Container
) -> None:
    answers: list[tuple[dict[str, object], float]] = []

    def wait() -> None:
        r = client.get(DETAIL, params={"wait": "60"}, headers=admin)
        answers.append((r.json(), time.monotonic()))

    waiter = threading.Thread(target=wait)
    waiter.start()
    until(lambda: container.task_ends.waiting() == 1)
    assert answers == []  # still held: the task has not ended
    cancelled_at = time.monotonic()
    cancel = f"/api/directory/workflowTask/id/{task}/pipelines/{WF}/cancel"
    assert client.post(cancel, headers=admin).status_code == 200
    waiter.join(timeout=30)
    [(body, answered_at)] = answers
    assert body["status"] == "cancelled"
    # Woken by the end, not by the next re-read or the 60 s bound.
    assert answered_at - cancelled_at < 0.9
    assert container.task_ends.waiting() == 0


def test_an_ended_task_is_answered_at_once_and_a_running_one_at_the_bound(
    client: TestClient, admin: Headers, task: int
) -> None:
    started = time.monotonic()
    r = client.get(DETAIL, params={"wait": "1"}, headers=admin)
    assert (r.status_code, r.json()["status"]) == (200, "created")
    assert time.monotonic() - started >= 1.0
    cancel = f"/api/directory/workflowTask/id/{task}/pipelines/{WF}/cancel"
    assert client.post(cancel, headers=admin).status_code == 200
    started = time.monotonic()
    r = client.get(DETAIL, params={"wait": "60"}, headers=admin)
    assert r.json()["status"] == "cancelled"
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize("raw", ["61", "-1", "1.5", "x", "", "100"])
def test_a_bad_wait_is_400_naming_it(
    client: TestClient, admin: Headers, task: int, raw: str
) -> None:
    r = client.get(DETAIL, params={"wait": raw}, headers=admin)
    assert r.status_code == 400
    assert r.json()["detail"] == (f"wait: {raw!r} must be a whole number of seconds from 0 to 60")


def test_who_may_not_view_the_task_waits_for_nothing(client: TestClient, task: int) -> None:
    r = client.get(DETAIL, params={"wait": "x"})
    assert r.status_code == 401


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (CONVEYOR_TEST_DATABASE_URL)")
def test_the_detail_survives_the_database_dropping_its_connections(
    client: TestClient, admin: Headers, task: int, container: Container
) -> None:
    """On PostgreSQL the detail is read on the event loop's own connections (ADR 0004): a
    restart of the database leaves them dead, and the next read opens a new one."""
    assert client.get(DETAIL, headers=admin).json()["task_id"] == task
    assert drop_connections(container.db) >= 1
    r = client.get(DETAIL, headers=admin)
    assert (r.status_code, r.json()["task_id"]) == (200, task)


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (CONVEYOR_TEST_DATABASE_URL)")
def test_a_detail_the_database_does_not_answer_is_503_and_the_next_is_read(
    client: TestClient,
    admin: Headers,
    task: int,
    container: Container,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read on the event loop waits no longer than its deadline: a client polling a
    task's status gets 503 with Retry-After, not a request that hangs for good."""
    monkeypatch.setattr(async_reads, "READ_TIMEOUT_S", 0.5)
    asking = ThreadPoolExecutor(1)  # without the deadline the request waits for good
    with container.db.engine.connect() as holder:
        holder.execute(sa.text("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE"))
        try:
            r = asking.submit(client.get, DETAIL, headers=admin).result(timeout=15)
        finally:
            holder.rollback()
            asking.shutdown(wait=False)
    assert r.status_code == 503
    assert r.headers["Retry-After"]
    assert r.json()["detail"].startswith("the database cannot be reached; try again shortly")
    assert client.get(DETAIL, headers=admin).json()["task_id"] == task
