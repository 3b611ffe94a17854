"""Faults of what surrounds the runners, with real components: a PostgreSQL and a Redis
of the test's own, stopped and started again mid-stream, and real celery workers.
Every task still ends, nothing runs twice, nothing is left running."""

import time
from collections.abc import Callable, Iterator

import pytest

from conveyor.domain.states import JobState
from conveyor.storage import migrate
from conveyor.storage.db import Database
from tests.conftest import alive
from tests.e2e.services import PrivatePostgres, PrivateRedis
from tests.engine.conftest import Engine
from tests.engine.test_celery import Workers

EngineFactory = Callable[..., Engine]


@pytest.fixture
def private_db(postgres: PrivatePostgres) -> Iterator[Database]:
    """Request it before `engine_factory`: pytest tears fixtures down in reverse, so the
    engine stops before its database is disposed and its PostgreSQL stopped."""
    db = Database.from_url(postgres.url)
    migrate.upgrade(db)
    yield db
    db.dispose()


def celery_extra(broker_url: str) -> str:
    return f"executor: celery\nbroker_url: '{broker_url}'\nheartbeat_timeout: 30s\n"


def wait_job_state(engine: Engine, task: int, state: JobState, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while engine.jobs(task)[0].state != state:
        assert time.monotonic() < deadline, f"the job never became {state}"
        time.sleep(0.05)


def test_a_broker_that_is_down_when_a_job_is_sent_delays_it_and_loses_nothing(
    engine_factory: EngineFactory, redis: PrivateRedis, tmp_path_factory: pytest.TempPathFactory
) -> None:
    engine = engine_factory(extra=celery_extra(redis.url))
    workers = Workers(engine, tmp_path_factory.mktemp("workers"))
    try:
        workers.start()
        redis.stop()
        task = engine.create(api="")
        # The send fails: the job waits as pending, never 'queued' with no message.
        wait_job_state(engine, task, JobState.PENDING)
        time.sleep(1.5)  # the scheduler tries again meanwhile, and fails again
        # While a send is being tried the job is `queued`; a failed one puts it back.
        wait_job_state(engine, task, JobState.PENDING)
        redis.start()  # the same port: the worker reconnects, the scheduler sends again
        assert engine.wait(task, timeout=90)["status"] == "passed"
    finally:
        workers.stop()


def test_a_postgres_restart_between_jobs_loses_no_job(
    private_db: Database,
    postgres: PrivatePostgres,
    engine_factory: EngineFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The worker's pooled connections die with the server: its next claim meets a
    stale one, and must retry, not drop the message."""
    from tests.engine.test_celery import broker_url

    engine = engine_factory(extra=celery_extra(broker_url("redis")), db=private_db)
    workers = Workers(engine, tmp_path_factory.mktemp("workers"))
    try:
        workers.start()
        assert engine.wait(engine.create(api=""), timeout=60)["status"] == "passed"
        postgres.stop()
        postgres.start()
        assert engine.wait(engine.create(api=""), timeout=60)["status"] == "passed"
    finally:
        workers.stop()


def test_a_postgres_outage_mid_job_costs_the_job_nothing(
    private_db: Database,
    postgres: PrivatePostgres,
    engine_factory: EngineFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from tests.engine.test_celery import broker_url

    engine = engine_factory(extra=celery_extra(broker_url("redis")), db=private_db)
    workers = Workers(engine, tmp_path_factory.mktemp("workers"))
    try:
        workers.start()
        task = engine.create(api="sleep")  # runs until its processes are stopped
        pids = engine.wait_for_pids(task)
        postgres.stop()
        time.sleep(5)  # the outage: the job's cancel checks and log writes fail
        assert all(alive(p) for p in pids), "the job was abandoned during the outage"
        postgres.start()
        assert engine.act("cancel", task) == 200
        assert engine.wait(task, {"cancelled"}, timeout=60)["status"] == "cancelled"
        deadline = time.monotonic() + 1 + 5
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in pids if alive(p)] == []
        wait_job_state(engine, task, JobState.CANCELLED)
    finally:
        workers.stop()


def test_the_api_meets_no_dead_connection_after_a_postgres_restart(
    private_db: Database, postgres: PrivatePostgres, engine_factory: EngineFactory
) -> None:
    """The first request after a restart of the database is answered, not a 503: writes
    take pinged connections, reads run once more on a dropped one."""
    engine = engine_factory(db=private_db)
    first = engine.create(api="")
    assert engine.wait(first)["status"] == "passed"
    postgres.stop()
    postgres.start()
    second = engine.create(api="")  # a write, first thing after the restart
    assert second == first + 1
    assert engine.item(second)["task_id"] == second  # a read
    assert engine.wait(second)["status"] == "passed"


def test_readyz_names_the_database_or_the_broker_while_it_is_away(
    private_db: Database,
    postgres: PrivatePostgres,
    redis: PrivateRedis,
    engine_factory: EngineFactory,
) -> None:
    engine = engine_factory(extra=celery_extra(redis.url), db=private_db)

    def ready() -> tuple[int, dict[str, str]]:
        r = engine.client.get("/readyz")
        return r.status_code, r.json()["checks"]

    assert ready() == (200, {"database": "ok", "migrations": "ok", "broker": "ok"})
    redis.stop()
    status, checks = ready()
    assert (status, checks["database"]) == (503, "ok")
    assert checks["broker"].startswith("cannot be reached")
    redis.start()
    postgres.stop()
    status, checks = ready()
    assert (status, checks["broker"]) == (503, "ok")
    assert checks["database"].startswith("cannot be reached")
    # Metrics still answer, and say the database's counts are missing.
    metrics = engine.client.get("/metrics")
    assert metrics.status_code == 200
    assert "conveyor_database_up 0.0" in metrics.text
    postgres.start()
    assert ready()[0] == 200
    assert "conveyor_database_up 1.0" in engine.client.get("/metrics").text
