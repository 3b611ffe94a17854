"""Job logs in the database: an outage of the database loses none of a job's log."""

import pytest
import sqlalchemy as sa

from conveyor.storage import log_store
from conveyor.storage.db import Database
from conveyor.storage.log_store import DbLogSink, DbLogStore
from conveyor.storage.tables import jobs, tasks


@pytest.fixture
def job_id(database: Database) -> int:
    with database.write() as conn:
        task_pk = conn.execute(
            tasks.insert()
            .values(
                workflow_name="wf",
                task_id=1,
                env_name="dev",
                state="running",
                attempt=1,
                create_time=0,
                created_by="t",
                spec={},
            )
            .returning(tasks.c.id)
        ).scalar_one()
        return int(
            conn.execute(
                jobs.insert()
                .values(task_pk=task_pk, attempt=1, stage="build", service="s", state="running")
                .returning(jobs.c.id)
            ).scalar_one()
        )


def take_down(database: Database) -> None:
    with database.write() as conn:
        conn.execute(sa.text("ALTER TABLE job_log_chunks RENAME TO away"))


def bring_back(database: Database) -> None:
    with database.write() as conn:
        conn.execute(sa.text("ALTER TABLE away RENAME TO job_log_chunks"))


def test_a_log_written_while_the_database_is_away_is_stored_whole_after(
    database: Database, job_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_store, "RETRY_MAX_S", 0.0)  # retry at each chance, no backoff
    sink = DbLogSink(database, job_id)  # opening it reads nothing
    sink.append(b"a" * log_store.CHUNK_BYTES)
    take_down(database)
    try:
        for piece in (b"b", b"c", b"d"):
            sink.append(piece * log_store.CHUNK_BYTES)  # each flush fails, and is kept
    finally:
        bring_back(database)
    sink.append(b"end\n")
    sink.close()
    data, size = DbLogStore(database).read(job_id, 0, 10 * log_store.CHUNK_BYTES)
    chunk = log_store.CHUNK_BYTES
    assert data == b"a" * chunk + b"b" * chunk + b"c" * chunk + b"d" * chunk + b"end\n"
    assert size == len(data)


def test_a_log_the_database_never_takes_fails_the_job_instead_of_growing(
    database: Database, job_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_store, "MAX_PENDING_BYTES", 4 * log_store.CHUNK_BYTES)
    sink = DbLogSink(database, job_id)
    take_down(database)
    try:
        with pytest.raises(OSError, match="the database has not taken"):
            for _ in range(10):
                sink.append(b"x" * log_store.CHUNK_BYTES)
    finally:
        bring_back(database)
