"""Job logs in the database: an outage of the database loses none of a job's log."""

import pytest
import sqlalchemy as sa

from conveyor.storage import log_store
from conveyor.storage.db import Database
from conveyor.storage.log_store import DbLogSink, DbLogStore


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


def test_a_later_sink_for_the_same_job_goes_on_after_what_is_stored(
    database: Database, job_id: int
) -> None:
    first = DbLogSink(database, job_id)
    first.append(b"first run\n")
    first.close()
    again = DbLogSink(database, job_id)  # a job's log opened anew: nothing overwritten
    again.append(b"second\n")
    again.flush()
    again.append(b"third\n")
    again.close()
    assert DbLogStore(database).read(job_id, 0, 1000) == (b"first run\nsecond\nthird\n", 23)
    assert DbLogStore(database).read(job_id, 10, 7) == (b"second\n", 23)


def test_each_flush_is_one_statement(database: Database, job_id: int) -> None:
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    sink = DbLogSink(database, job_id)
    # Every engine: the writes may go through a pool of their own.
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        for line in (b"one\n", b"two\n"):
            sink.append(line)
            sink.flush()
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
    assert [s.split()[0] for s in statements if not s.startswith(("BEGIN", "COMMIT"))] == [
        "INSERT",
        "INSERT",
    ]
    assert DbLogStore(database).read(job_id, 0, 100) == (b"one\ntwo\n", 8)
