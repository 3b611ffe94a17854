"""Job logs in the database: an outage of the database loses none of a job's log."""

import contextlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from conveyor.domain.jobs import JobResult, Outcome
from conveyor.executors.retrying import RetryingReporter
from conveyor.storage import db, log_store
from conveyor.storage.db import Database
from conveyor.storage.job_store import LOG_END_TRIES, SqlJobStore, StoreJobReporter
from conveyor.storage.log_store import DbLogSink, DbLogStore
from conveyor.storage.tables import jobs


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


def fail_next_write(database: Database, monkeypatch: pytest.MonkeyPatch, committed: bool) -> None:
    """The next write fails at its commit: rolled back, or committed with the answer lost
    (a connection dropped at COMMIT: what was to follow the commit never runs)."""
    real = database.write
    failures = [sa.exc.OperationalError("COMMIT", {}, Exception("connection lost"))]

    @contextlib.contextmanager
    def write() -> Iterator[Connection]:
        if not failures:
            with real() as conn:
                yield conn
            return
        failure = failures.pop()
        with real() as conn:
            yield conn
            if not committed:
                raise failure  # before the commit: the write is rolled back
            conn.info.pop(db._AFTER_COMMIT, None)
        raise failure

    monkeypatch.setattr(database, "write", write)


# A write whose commit fails: rolled back, or committed with the answer lost; made
# before the sink stored anything (its offset unknown), or after a first chunk.
COMMIT_FAILURES = pytest.mark.parametrize(
    "committed", [False, True], ids=["rolled-back", "answer-lost"]
)
FIRST_OR_LATER = pytest.mark.parametrize("first", [True, False], ids=["first-chunk", "later-chunk"])


def a_sink(database: Database, job_id: int, first: bool, end_with_result: bool) -> DbLogSink:
    """A sink that has stored nothing yet (`first`), or a first chunk, b"before\\n"."""
    sink = DbLogSink(database, job_id, end_with_result)
    if not first:
        sink.append(b"before\n")
        sink.flush()
    return sink


@COMMIT_FAILURES
@FIRST_OR_LATER
def test_a_chunk_whose_commit_fails_is_stored_once_and_leaves_no_hole(
    database: Database, job_id: int, monkeypatch: pytest.MonkeyPatch, committed: bool, first: bool
) -> None:
    sink = a_sink(database, job_id, first, end_with_result=False)
    fail_next_write(database, monkeypatch, committed)
    sink.append(b"middle\n")
    with pytest.raises(sa.exc.DBAPIError):
        sink.flush()
    sink.append(b"end\n")
    sink.close()
    whole = (b"" if first else b"before\n") + b"middle\nend\n"
    store = DbLogStore(database)
    assert store.read(job_id, 0, 100) == (whole, len(whole))
    for offset in range(len(whole)):  # a reader following by offset finds every byte
        assert store.read(job_id, offset, 1) == (whole[offset : offset + 1], len(whole))


def job_state(database: Database, job_id: int) -> str:
    with database.read() as conn:
        state: str = conn.execute(sa.select(jobs.c.state).where(jobs.c.id == job_id)).scalar_one()
    return state


def test_a_log_ended_with_the_result_is_stored_in_the_results_transaction(
    database: Database, job_id: int
) -> None:
    sink = DbLogSink(database, job_id, end_with_result=True)
    sink.append(b"early\n")
    sink.flush()
    sink.append(b"job passed\n")
    writes = database.writes_begun
    sink.close()
    store = DbLogStore(database)
    assert (database.writes_begun, store.read(job_id, 0, 100)) == (writes, (b"early\n", 6))
    result = JobResult(Outcome.PASSED, 0, "script exited with 0")
    assert SqlJobStore(database).finish_job(job_id, result, 5, log_end=sink.store_pending)
    assert database.writes_begun == writes + 1
    assert store.read(job_id, 0, 100) == (b"early\njob passed\n", 17)
    assert job_state(database, job_id) == "passed"


@COMMIT_FAILURES
@FIRST_OR_LATER
def test_a_result_recorded_again_after_a_failed_commit_stores_the_logs_end_once(
    database: Database, job_id: int, monkeypatch: pytest.MonkeyPatch, committed: bool, first: bool
) -> None:
    """What the runner's retry of a result (retrying.py) meets."""
    sink = a_sink(database, job_id, first, end_with_result=True)
    sink.append(b"end\n")
    sink.close()
    store = SqlJobStore(database)
    result = JobResult(Outcome.FAILED, 3, "script exited with 3")
    fail_next_write(database, monkeypatch, committed)
    with pytest.raises(sa.exc.DBAPIError):
        store.finish_job(job_id, result, 5, log_end=sink.store_pending)
    # Recorded by the first try, the result is not recorded twice; the log's end neither.
    assert store.finish_job(job_id, result, 6, log_end=sink.store_pending) is not committed
    whole = (b"" if first else b"before\n") + b"end\n"
    assert DbLogStore(database).read(job_id, 0, 100) == (whole, len(whole))
    assert job_state(database, job_id) == "failed"


def test_the_end_of_a_reaped_jobs_log_is_stored_though_its_result_is_not(
    database: Database, job_id: int
) -> None:
    with database.write() as conn:  # the reaper's doing: the runner seemed lost
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(state="lost"))
    sink = DbLogSink(database, job_id, end_with_result=True)
    sink.append(b"passed after all\n")
    sink.close()
    result = JobResult(Outcome.PASSED, 0, "script exited with 0")
    assert not SqlJobStore(database).finish_job(job_id, result, 5, log_end=sink.store_pending)
    assert DbLogStore(database).read(job_id, 0, 100) == (b"passed after all\n", 17)
    assert job_state(database, job_id) == "lost"


def test_a_log_end_the_database_keeps_refusing_does_not_keep_the_result_out(
    database: Database, job_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    tries: list[int] = []

    def refused(conn: Connection) -> None:
        tries.append(1)
        raise sa.exc.IntegrityError("INSERT INTO job_log_chunks", {}, Exception("refused"))

    store = SqlJobStore(database)
    reporter = RetryingReporter(
        StoreJobReporter(store, job_id, "host:1", lambda: 5, lambda: None, refused), job_id
    )
    reporter.finished(JobResult(Outcome.PASSED, 0, "script exited with 0"))
    assert job_state(database, job_id) == "passed"
    assert len(tries) == LOG_END_TRIES
    assert "the end of its log was refused 3 times" in caplog.text


def test_a_log_end_not_stored_while_the_database_is_away_is_not_given_up(
    database: Database, job_id: int
) -> None:
    sink = DbLogSink(database, job_id, end_with_result=True)
    sink.append(b"the end\n")
    sink.close()
    away = [True]

    def log_end(conn: Connection) -> None:
        if away[0]:  # what Database.unreachable takes for "not now", on either database
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        sink.store_pending(conn)

    store = SqlJobStore(database)
    reporter = StoreJobReporter(store, job_id, "host:1", lambda: 5, lambda: None, log_end)
    result = JobResult(Outcome.PASSED, 0, "script exited with 0")
    for _ in range(LOG_END_TRIES + 1):
        with pytest.raises(sa.exc.OperationalError):
            reporter.finished(result)
    away[0] = False
    reporter.finished(result)
    assert DbLogStore(database).read(job_id, 0, 100) == (b"the end\n", 8)
    assert job_state(database, job_id) == "passed"
