"""The engine: SQLite pragmas, write transactions, and reads that survive a restart."""

import contextlib
import os
import select
import signal
import socket
import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from conveyor.storage import db as db_module
from conveyor.storage.db import (
    Database,
    PreparedQuery,
    PreparedWrite,
    after_commit,
    after_end,
    json_value,
    prepared_insert,
    savepoint,
)
from conveyor.storage.tables import tasks
from conveyor.storage.token_store import SqlTokenStore
from tests.conftest import PG_URL, drop_connections
from tests.storage.conftest import a_running_job


def test_sqlite_runs_in_wal_with_foreign_keys(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("SQLite pragmas; this run is on PostgreSQL")
    with database.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_a_failed_write_transaction_leaves_nothing(database: Database) -> None:
    with pytest.raises(sa.exc.IntegrityError), database.write() as conn:
        conn.exec_driver_sql(
            "INSERT INTO workflow_sequences (workflow_name, last_task_id) VALUES ('w', 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO workflow_sequences (workflow_name, last_task_id) VALUES ('w', 2)"
        )
    with database.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM workflow_sequences").scalar_one() == 0


class Boom(Exception):
    pass


def insert_sequence(conn: sa.Connection, name: str) -> None:
    conn.exec_driver_sql(
        "INSERT INTO workflow_sequences (workflow_name, last_task_id) VALUES (?, 1)"
        if conn.dialect.name == "sqlite"
        else "INSERT INTO workflow_sequences (workflow_name, last_task_id) VALUES (%s, 1)",
        (name,),
    )


def test_what_waits_for_a_commit_runs_after_it_and_never_after_a_rollback(
    database: Database,
) -> None:
    ran: list[str] = []
    with pytest.raises(Boom), database.write() as conn:
        insert_sequence(conn, "rolled-back")
        after_commit(conn, lambda: ran.append("rolled-back"))
        raise Boom
    with database.write() as conn:
        insert_sequence(conn, "kept")
        after_commit(conn, lambda: ran.append("kept"))
        assert ran == []  # not before the commit
    assert ran == ["kept"]
    with database.write() as conn:  # and not again with the next transaction
        insert_sequence(conn, "next")
    assert ran == ["kept"]


def test_what_waits_for_a_transactions_end_runs_after_a_commit_and_after_a_rollback(
    database: Database,
) -> None:
    ran: list[str] = []
    with database.write() as conn:
        insert_sequence(conn, "kept")
        after_end(conn, lambda: ran.append("end"))
        after_commit(conn, lambda: ran.append("commit"))
    assert ran == ["commit", "end"]
    with pytest.raises(Boom), database.write() as conn:
        after_end(conn, lambda: ran.append("end after rollback"))
        raise Boom
    assert ran == ["commit", "end", "end after rollback"]


def test_an_action_after_a_commit_that_fails_stops_neither_the_others_nor_the_caller(
    database: Database,
) -> None:
    ran: list[str] = []
    with database.write() as conn:  # the change is stored: the caller must not be told no
        insert_sequence(conn, "stored")
        after_commit(conn, lambda: 1 / 0)
        after_commit(conn, lambda: ran.append("next"))
    assert ran == ["next"]


def test_a_savepoint_undoes_its_part_and_what_it_asked_for_and_keeps_the_rest(
    database: Database,
) -> None:
    ran: list[str] = []
    with database.write() as conn:
        insert_sequence(conn, "before")
        with pytest.raises(Boom), savepoint(conn):
            insert_sequence(conn, "inside")
            after_commit(conn, lambda: ran.append("inside"))
            raise Boom
        after_commit(conn, lambda: ran.append("after"))
    assert ran == ["after"]
    with database.read() as read:
        names = read.exec_driver_sql("SELECT workflow_name FROM workflow_sequences").scalars()
        assert list(names) == ["before"]


def test_what_waits_for_a_commit_runs_once_the_writer_is_free(database: Database) -> None:
    # Another thread's write can start and end while the action runs: it does not hold
    # SQLite's one writer (nor this process's lock in front of it).
    def write_elsewhere() -> None:
        other = threading.Thread(target=lambda: insert_sequence_in(database, "other"))
        other.start()
        other.join(timeout=10)
        assert not other.is_alive(), "the other write waited for the action's transaction"

    with database.write() as conn:
        insert_sequence(conn, "first")
        after_commit(conn, write_elsewhere)
    with database.read() as read:
        names = read.exec_driver_sql("SELECT workflow_name FROM workflow_sequences").scalars()
        assert sorted(names) == ["first", "other"]


def test_a_connection_lost_mid_write_raises_the_error_that_says_so(database: Database) -> None:
    # The API answers 503 and the log store retries on a lost connection's error; a
    # write must not replace it with one about the transaction it could not finish.
    lost = sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))
    with pytest.raises(sa.exc.OperationalError) as raised, database.write() as conn:
        insert_sequence(conn, "w")
        conn.invalidate()
        raise lost
    assert raised.value is lost


def insert_sequence_in(database: Database, name: str) -> None:
    with database.write() as conn:
        insert_sequence(conn, name)


def test_sqlite_writers_wait_for_each_other_instead_of_failing(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("SQLite locking; this run is on PostgreSQL")
    # Read-then-write transactions from many threads: with deferred transactions SQLite
    # would fail some with "database is locked"; BEGIN IMMEDIATE makes them queue.
    with database.write() as conn:
        conn.exec_driver_sql("INSERT INTO workflow_sequences VALUES ('w', 0)")
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def bump() -> None:
        start.wait()
        try:
            for _ in range(20):
                with database.write() as conn:
                    n = conn.exec_driver_sql(
                        "SELECT last_task_id FROM workflow_sequences"
                    ).scalar_one()
                    conn.execute(
                        sa.text("UPDATE workflow_sequences SET last_task_id = :n"), {"n": n + 1}
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with database.read() as conn:
        assert (
            conn.exec_driver_sql("SELECT last_task_id FROM workflow_sequences").scalar_one() == 160
        )


def add_task(conn: sa.Connection) -> None:
    conn.execute(
        tasks.insert().values(
            workflow_name="w", task_id=1, env_name="dev", state="queued", attempt=1,
            create_time=0, created_by="alice", spec={},
        )
    )  # fmt: skip


def set_spec(database: Database) -> PreparedWrite:
    stmt = tasks.update().where(tasks.c.task_id == 1).values(spec=sa.bindparam("spec"), attempt=2)
    return PreparedWrite(stmt, database.engine.dialect)


def test_a_prepared_write_stores_its_values_as_the_table_types_them(database: Database) -> None:
    with database.write() as conn:
        add_task(conn)
    with database.write() as conn:
        assert set_spec(database).run(conn, {"spec": {"targets": ["a", 1]}}) == 1
    with database.read() as conn:
        row = conn.execute(sa.select(tasks.c.spec, tasks.c.attempt)).one()
    assert (row.spec, row.attempt) == ({"targets": ["a", 1]}, 2)  # JSON, not the dict's repr


def test_a_prepared_insert_returns_its_row_and_types_every_row_it_writes(
    database: Database,
) -> None:
    columns = (tasks.c.id, tasks.c.spec, tasks.c.workflow_name)
    keys = ("workflow_name", "task_id", "env_name", "state", "attempt", "create_time",
            "created_by", "spec")  # fmt: skip
    rows = [dict(zip(keys, ("wf", i, "dev", "queued", 1, 0, "t", {"n": [i]}), strict=True))
            for i in (1, 2, 3)]  # fmt: skip
    with database.write() as conn:
        insert = prepared_insert(conn.dialect, tasks, keys, columns)
        first = insert.returned_row(conn, rows[0])
        prepared_insert(conn.dialect, tasks, keys).run_many(conn, rows[1:])
        prepared_insert(conn.dialect, tasks, keys).run_many(conn, [])
    # Returned as written; a JSON column as its text on SQLite (as a PreparedQuery's).
    assert (json_value(first[1]), first[2]) == ({"n": [1]}, "wf")
    with database.read() as conn:
        stored = conn.execute(sa.select(tasks.c.task_id, tasks.c.spec).order_by("id")).all()
    assert [tuple(r) for r in stored] == [(i, {"n": [i]}) for i in (1, 2, 3)]
    with pytest.raises(sa.exc.IntegrityError), database.write() as conn:
        insert.returned_row(conn, rows[0])  # (workflow_name, task_id) is unique
    with database.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one() == 3


def test_a_prepared_write_rolled_back_leaves_nothing_and_the_writer_free(
    database: Database,
) -> None:
    with database.write() as conn:
        add_task(conn)
    with pytest.raises(Boom), database.write() as conn:
        set_spec(database).run(conn, {"spec": {"lost": True}})
        raise Boom
    # SQLite's writer is free again at once.
    other = threading.Thread(target=lambda: insert_sequence_in(database, "next"))
    other.start()
    other.join(timeout=10)
    assert not other.is_alive()
    with database.read() as conn:
        assert conn.execute(sa.select(tasks.c.spec)).scalar_one() == {}


def test_a_write_runs_in_one_transaction_from_its_first_statement_to_its_commit(
    database: Database,
) -> None:
    # Alembic asks: told no, it would commit after each migration, and a failed one
    # would leave the schema half-changed.
    with database.write() as conn:
        assert conn.in_transaction()
    with pytest.raises(Boom), database.write() as conn:
        conn.execute(sa.text("CREATE TABLE scratch (x INTEGER)"))
        insert_sequence(conn, "w")
        raise Boom
    with database.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM workflow_sequences").scalar_one() == 0
        tables = sa.inspect(conn).get_table_names()
    assert "scratch" not in tables
    assert database.writes_begun == 2


def test_sqlite_locked_by_another_process_is_the_error_callers_retry_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The log store retries and the API answers 503 on a DBAPIError: a transaction that
    # cannot even begin must raise one, not the driver's bare sqlite3 error.
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_S", 1)
    path = tmp_path / "locked.db"
    database = Database.from_url(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sa.exc.OperationalError, match="database is locked"):
            insert_sequence_in(database, "w")
        holder.execute("ROLLBACK")
        with database.write() as conn:  # the file's writer is free again: so is this one
            conn.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
        database.dispose()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM scratch").fetchall() == [(0,)]


def writer_connection(database: Database) -> object:
    with database.write() as conn:
        conn.exec_driver_sql("UPDATE workflow_sequences SET last_task_id = last_task_id + 1")
        return conn.connection.dbapi_connection


def test_sqlite_writes_take_turns_on_one_connection_and_go_on_after_a_failed_one(
    database: Database,
) -> None:
    if not database.is_sqlite:
        pytest.skip("SQLite's one writer; this run is on PostgreSQL")
    # One connection for every write of the process keeps its page cache warm: a write
    # on a connection another one wrote through since rereads every page it needs.
    # Writers that wait for each other used to wait holding a connection each.
    start = threading.Barrier(4)
    seen: list[object] = []

    def write_often() -> None:
        start.wait()
        for _ in range(10):
            seen.append(writer_connection(database))

    threads = [threading.Thread(target=write_often) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 40
    assert all(conn is seen[0] for conn in seen)
    with pytest.raises(Boom), database.write() as conn:
        insert_sequence(conn, "lost")
        raise Boom
    # After a failure the connection is given back to the pool, which resets it; the
    # next write takes one from there, and works.
    insert_sequence_in(database, "kept")
    with database.read() as conn:
        names = conn.exec_driver_sql("SELECT workflow_name FROM workflow_sequences").scalars()
        assert list(names) == ["kept"]


def test_a_forked_child_writes_on_a_connection_of_its_own(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("SQLite's one writer; this run is on PostgreSQL")
    # A forked child inherits the parent's Database: the parent's SQLite connection must
    # be neither used nor closed there, not even once a failed write has put the
    # child's own back in the pool.
    insert_sequence_in(database, "parent")
    parents = writer_connection(database)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            with contextlib.suppress(Boom), database.write() as conn:
                raise Boom  # a failed write puts the connection back in the pool
            insert_sequence_in(database, "child")
            code = 2 if writer_connection(database) is parents else 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(wait_for_child(pid, 30)) == 0  # 2: the parent's
    insert_sequence_in(database, "parent again")
    assert writer_connection(database) is parents
    with database.read() as conn:
        names = conn.exec_driver_sql("SELECT workflow_name FROM workflow_sequences").scalars()
        assert sorted(names) == ["child", "parent", "parent again"]


def wait_for_child(pid: int, timeout_s: float) -> int:
    """The child's wait status; killed and failed if it has not ended by then."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
    finally:
        os.close(fd)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"the forked child did not end within {timeout_s}s")
    return os.waitpid(pid, 0)[1]


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (CONVEYOR_TEST_DATABASE_URL)")
def test_reads_survive_the_server_dropping_every_connection(database: Database) -> None:
    store = SqlTokenStore(database)
    held = [database.engine.raw_connection() for _ in range(3)]
    for conn in held:
        conn.close()  # back to the pool: three live connections now idle there
    assert store.find_by_hash("0" * 64) is None
    assert drop_connections(database) >= 1
    assert store.find_by_hash("0" * 64) is None
    assert store.find_by_hash("1" * 64) is None


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (CONVEYOR_TEST_DATABASE_URL)")
def test_writes_after_the_server_dropped_every_connection_meet_no_dead_one(
    database: Database,
) -> None:
    """A restart of PostgreSQL: the write pool's idle connections are all dead, and a
    write, whose body cannot be run again, must not be the one to find out."""
    held = [database.write() for _ in range(3)]
    for write in held:
        write.__enter__()
    for write in held:
        write.__exit__(None, None, None)  # committed: three idle in the write pool
    assert drop_connections(database) >= 3
    for name in ("a", "b", "c", "d"):
        with database.write() as conn:
            insert_sequence(conn, name)
    with database.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM workflow_sequences").scalar_one() == 4


def silence_deadline(dbapi_conn: object) -> tuple[int, ...]:
    """What the kernel does with a silent peer, read off a connection's socket: the user
    timeout (ms), keepalive on, first probe after (s), between probes (s), probes."""
    fd = dbapi_conn.pgconn.socket  # type: ignore[attr-defined]
    sock = socket.socket(fileno=os.dup(fd))
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            pytest.skip("the test database is reached over a Unix socket: no TCP deadline")
        tcp = socket.IPPROTO_TCP
        return (
            sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(tcp, socket.TCP_KEEPIDLE),
            sock.getsockopt(tcp, socket.TCP_KEEPINTVL),
            sock.getsockopt(tcp, socket.TCP_KEEPCNT),
        )
    finally:
        sock.close()  # the duplicate only


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (CONVEYOR_TEST_DATABASE_URL)")
def test_postgresql_connections_give_up_on_a_silent_server_after_the_deadline(
    database: Database,
) -> None:
    """A partition, or the database's host gone: the kernel drops a connection whose
    peer has not acknowledged a send for 10 s, or, idle, answered none of five
    keepalive probes sent from 5 s on, a second apart (one lost is not the end).
    Without it a write, the scheduler or a read would wait out the kernel's quarter of
    an hour of retransmissions; libpq's own keepalives first probe after two hours."""
    with database.read() as conn:
        read = silence_deadline(conn.connection.dbapi_connection)
    with database.write() as conn:
        written = silence_deadline(conn.connection.dbapi_connection)
    # As docs/reliability.md says; before, (0, 1, 7200, 75, 9): libpq's and the kernel's.
    assert read == written == (10_000, 1, 5, 1, 5)


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (CONVEYOR_TEST_DATABASE_URL)")
def test_a_deadline_the_database_url_sets_stands(database: Database) -> None:
    url = database.engine.url.update_query_dict({"tcp_user_timeout": "60000"})
    own = Database.from_url(url.render_as_string(hide_password=False))
    try:
        with own.read() as conn:
            read = silence_deadline(conn.connection.dbapi_connection)
        with own.write() as conn:
            written = silence_deadline(conn.connection.dbapi_connection)
    finally:
        own.dispose()
    assert read == written == (60_000, 1, 5, 1, 5)


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (CONVEYOR_TEST_DATABASE_URL)")
def test_a_database_that_drops_new_connections_too_is_an_outage_not_a_bug(
    database: Database,
) -> None:
    """A pooler that takes the login and drops the client at its first statement, in a
    failover: after the stale connection, the new one fails too. The write must raise
    what callers retry on (the API's 503, a runner's retries), not a programming error."""
    with database.write() as conn:
        insert_sequence(conn, "before")  # the pool keeps a connection that has begun

    def dropped_at_first_word(dbapi_conn: object, _record: object, _proxy: object) -> None:
        dbapi_conn.close()  # type: ignore[attr-defined]

    sa.event.listen(database._writer, "checkout", dropped_at_first_word, insert=True)
    try:
        with pytest.raises(sa.exc.DBAPIError) as raised, database.write() as conn:
            insert_sequence(conn, "during")
    finally:
        sa.event.remove(database._writer, "checkout", dropped_at_first_word)
    assert database.unreachable(raised.value)
    with database.write() as conn:
        insert_sequence(conn, "after")
    with database.read() as conn:
        names = conn.exec_driver_sql("SELECT workflow_name FROM workflow_sequences").scalars()
        assert sorted(names) == ["after", "before"]


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (CONVEYOR_TEST_DATABASE_URL)")
def test_a_write_on_postgresql_costs_its_statements_and_two_round_trips(
    database: Database, tmp_path: Path
) -> None:
    """BEGIN and COMMIT, and no ping of the connection besides: what a write sends,
    counted in libpq's trace of the protocol (a query, or a Sync, is a round trip)."""
    trace = tmp_path / "trace"
    traced: list[object] = []

    def trace_it(dbapi_conn: object, _record: object) -> None:
        pgconn = dbapi_conn.pgconn  # type: ignore[attr-defined]
        pgconn.trace(out.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        traced.append(pgconn)

    with trace.open("w") as out:
        # Traced from its return to the pool on: all the next write sends is seen.
        sa.event.listen(database._writer, "checkin", trace_it)
        try:
            with database.write() as conn:
                insert_sequence(conn, "not counted")
            sa.event.remove(database._writer, "checkin", trace_it)
            with database.write() as conn:
                insert_sequence(conn, "counted")
        finally:
            for pgconn in traced:
                pgconn.untrace()  # type: ignore[attr-defined]
    assert len(traced) == 1  # the pool's one connection, taken again
    # Lines of "F|B <tab> length <tab> message <tab> its fields".
    sent = [line.split("\t") for line in trace.read_text().splitlines()]
    trips = [m[3].strip() if m[2] == "Query" else "statement" for m in sent
             if m[0] == "F" and m[2] in ("Query", "Sync")]  # fmt: skip
    assert trips == ['"BEGIN"', "statement", '"COMMIT"']


def test_reads_run_together_on_sqlite_see_one_snapshot(database: Database) -> None:
    """A task's detail is four reads: a job ending between them must not show a task
    still running beside a job that has passed (a client waiting on the first would
    not see the end the second says happened)."""
    if not database.is_sqlite:
        pytest.skip("a snapshot across statements is SQLite's; PostgreSQL reads committed")
    task_pk, _ = a_running_job(database)
    state = sa.select(tasks.c.state).where(tasks.c.id == sa.bindparam("task_pk"))

    class EndsTheTaskAfterItsRead(PreparedQuery):
        def rows(self, dbapi_conn: object, params: dict[str, object]) -> list[tuple[object, ...]]:
            found = super().rows(dbapi_conn, params)
            with database.write() as conn:
                conn.execute(tasks.update().where(tasks.c.id == task_pk).values(state="passed"))
            return found

    dialect = database.engine.dialect
    first, second = database.read_together(
        [EndsTheTaskAfterItsRead(state, dialect), PreparedQuery(state, dialect)],
        {"task_pk": task_pk},
    )
    assert first == second == [("running",)]
    assert database.read_rows(PreparedQuery(state, dialect), {"task_pk": task_pk}) == [("passed",)]
