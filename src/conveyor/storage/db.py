"""The engine and its transactions.

SQLite gets WAL (readers never wait for the writer), enforced foreign keys and a busy
timeout; every write transaction starts with `BEGIN IMMEDIATE`, because a deferred
transaction that reads and then writes fails at once with SQLITE_BUSY when another
writer got there first, where an immediate one waits its turn.
"""

import contextlib
import functools
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, Row

AnyRow = Row[*tuple[Any, ...]]

log = logging.getLogger("conveyor.db")

SQLITE_BUSY_TIMEOUT_S = 30
# SQLite's OperationalErrors that mean "not now" rather than "wrong" ("no such table").
_SQLITE_UNAVAILABLE = (
    "database is locked",
    "unable to open database file",
    "disk I/O error",
    "database or disk is full",
)
POOL_SIZE = 20
POOL_OVERFLOW = 20
WRITE_POOL_SIZE = 10
WRITE_POOL_OVERFLOW = 10
# SQLite's writes take one connection in turn (Database._sqlite_write); a nested write
# (it fails on the busy timeout) or the one after a failure takes another.
SQLITE_WRITE_POOL = (1, 10)
# A PostgreSQL connection whose peer has gone silent (a partition, a host gone) ends
# with an error after this long, not after the kernel's quarter of an hour of
# retransmissions: for a connect, an unacknowledged send, and an idle connection
# (keepalive probes from half of it, one a second: a lost probe is not the end), in
# libpq's settings, which cover the hop to a pooler or proxy only. It never bounds a
# statement's own length (a long migration still runs; the event loop's reads add a
# statement_timeout), but the kernel counts a send the server does not read as silence.
SILENT_PEER_S = 10
_SILENT_PEER_DEADLINE: dict[str, int] = {
    "connect_timeout": SILENT_PEER_S,
    "tcp_user_timeout": SILENT_PEER_S * 1000,
    "keepalives": 1,
    "keepalives_idle": SILENT_PEER_S // 2,
    "keepalives_interval": 1,
    "keepalives_count": SILENT_PEER_S // 2,
}


def silent_peer_deadline(given: Collection[str]) -> dict[str, Any]:
    """The libpq settings of _SILENT_PEER_DEADLINE that the database's URL or conninfo
    does not set (`given`: the names it sets): a user's own deadline stands."""
    return {k: v for k, v in _SILENT_PEER_DEADLINE.items() if k not in given}


DISPOSE_WAIT_S = 5.0  # for a write under way to end, before the connections are closed
# What forked children inherited of their parent's held writer connections (see
# Database.forget_connections_after_fork): one a fork, never used.
_PARENTS_CONNECTIONS: list[Connection] = []


def _prepare_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, decide how a transaction opens.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode is not None:
            # Through SQLAlchemy, though the driver's connection would be a little
            # cheaper: a "database is locked" here must reach callers wrapped, as a
            # DBAPIError, like any other statement's (the log store retries on those).
            conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(
    url: str | sa.URL, pool_size: int = POOL_SIZE, max_overflow: int = POOL_OVERFLOW
) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            # Requests run on up to 40 worker threads; a connection opened past the pool
            # is closed again after one use, and opening one (with its PRAGMAs) costs more
            # than the lookup it serves.
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
        _prepare_sqlite(engine)
        return engine
    # No pre-ping: it costs a round trip on every checkout. A dead connection fails the
    # statement, SQLAlchemy then drops every connection made before it, and reads retry;
    # the writes' pool finds it with the BEGIN it sends on checkout (_begin_on_checkout).
    return sa.create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=3600,
        connect_args=silent_peer_deadline(parsed.query),
    )


def _begin_on_checkout(engine: Engine) -> None:
    """PostgreSQL's writes: each connection leaves the pool in a transaction, its BEGIN
    sent on checkout. That BEGIN is the check that the connection is alive (a pre-ping
    would cost a round trip of its own on every write): on a dead one the pool drops
    every connection made before it and takes a new one, before the write's body runs.
    A new connection that fails its first BEGIN is the database's answer for now: that
    error is raised, wrapped as any statement's (Database.unreachable knows it).

    The driver is in autocommit, so it sends no BEGIN of its own before the first
    statement; its commit() and rollback() still end the transaction that is open. So
    nothing may end the transaction inside a write (the rest would be autocommitted),
    and this pool takes no isolation level (the driver refuses one in a transaction):
    a write that needs one would send `BEGIN ISOLATION LEVEL …` instead."""
    dbapi = engine.dialect.loaded_dbapi

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.rollback()  # whatever the dialect's first look left open
        dbapi_conn.autocommit = True

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        try:
            dbapi_conn.execute("BEGIN").close()
        except dbapi.Error as exc:
            gone = dbapi_conn.closed or engine.dialect.is_disconnect(exc, dbapi_conn, None)
            if gone and record.info.get(_BEGUN):  # kept in the pool while the server went
                raise sa.exc.InvalidatePoolError(f"the connection is gone: {exc}") from exc
            raise
        record.info[_BEGUN] = True


def json_value(raw: Any) -> Any:
    """A JSON column's value in a PreparedQuery row: SQLite's driver hands back the text,
    psycopg the decoded value."""
    return json.loads(raw) if isinstance(raw, str) else raw


class PreparedQuery:
    """A Core SELECT compiled once for one dialect and run on the raw DBAPI cursor.

    SQLAlchemy's execution pipeline costs about 100 µs a statement on this hardware,
    against 5 µs of SQLite work for an indexed read; the reads on the lookup path (the
    API's hot path) go through this instead (docs/adr/0004-lookup-hot-path.md). Rows come
    back as plain tuples in the statement's column order, with no type processing: use it
    only for columns whose driver values are already what the caller wants.
    """

    def __init__(self, stmt: sa.Select[Any] | sa.Update | sa.Insert, dialect: sa.Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        self._order = compiled.positiontup
        self._binds = compiled.binds
        # Values the compiler bound itself (SQLite's `OFFSET 0`, `.values(attempt=1)`);
        # callers add the rest, and one they leave out is an error, not a NULL.
        bound = compiled.construct_params(_check=False).items()
        self._defaults = {name: value for name, value in bound if value is not None}

    def arguments(self, params: dict[str, Any]) -> Any:
        """The driver's arguments for `params`: a dict, or a list in placeholder order."""
        values = {**self._defaults, **params}
        return values if self._order is None else [values[n] for n in self._order]

    def rows(self, dbapi_conn: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run on a DBAPI connection; prefer Database.read_rows, which picks one."""
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(self.sql, self.arguments(params))
            return list(cursor.fetchall())
        finally:
            cursor.close()


class PreparedWrite(PreparedQuery):
    """A Core UPDATE or INSERT compiled once, for the writes every task makes.

    On SQLite it runs on the driver's cursor of the write transaction's connection, with
    the statement's own bind processing (JSON, say): SQLAlchemy's pipeline would cost
    about 100 µs a statement with SQLite's one writer held, and every other writer of the
    process waiting for it. Elsewhere it goes through SQLAlchemy as any statement, which
    keeps its handling of a connection lost mid-transaction.
    """

    def __init__(self, stmt: sa.Update | sa.Insert, dialect: sa.Dialect) -> None:
        super().__init__(stmt, dialect)
        self.stmt = stmt
        self._raw = dialect.name == "sqlite"
        self._processors = {
            name: process
            for name, bind in self._binds.items()
            if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }

    def run(self, conn: Connection, params: dict[str, Any]) -> int:
        """Run in `conn`, a `Database.write`'s connection: the number of rows changed."""
        if not self._raw:
            return conn.execute(self.stmt, params).rowcount
        cursor = self._execute(conn, "execute", self._driver_args(params))
        count: int = cursor.rowcount
        cursor.close()
        return count

    def run_many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Run once for each of `rows` (an INSERT of several rows), in `conn`."""
        if not rows:
            return
        if not self._raw:
            conn.execute(self.stmt, rows)
            return
        self._execute(conn, "executemany", [self._driver_args(r) for r in rows]).close()

    def returned_row(self, conn: Connection, params: dict[str, Any]) -> tuple[Any, ...]:
        """Run a statement with RETURNING that writes one row, in `conn`: what it returns,
        as a plain tuple; on SQLite with no type processing (see PreparedQuery), so a
        JSON column comes back as its text (json_value)."""
        if not self._raw:
            return tuple(conn.execute(self.stmt, params).one())
        cursor = self._execute(conn, "execute", self._driver_args(params))
        try:
            [row] = cursor.fetchall()
        finally:
            cursor.close()
        return tuple(row)

    def _driver_args(self, params: dict[str, Any]) -> Any:
        values = {**self._defaults, **params}
        for name, process in self._processors.items():
            if name in values:
                values[name] = process(values[name])
        return self.arguments(values)

    def _execute(self, conn: Connection, method: str, args: Any) -> Any:
        dbapi_conn: Any = conn.connection.dbapi_connection
        try:
            return getattr(dbapi_conn, method)(self.sql, args)
        except conn.dialect.loaded_dbapi.Error as exc:
            # Wrapped as SQLAlchemy would: callers tell "not now" from "wrong" by it.
            raise sa.exc.DBAPIError.instance(
                self.sql, args, exc, conn.dialect.loaded_dbapi.Error
            ) from exc


@functools.lru_cache(maxsize=64)  # a few tables, per database the process opened
def prepared_insert(
    dialect: sa.Dialect,
    table: sa.Table,
    keys: tuple[str, ...],
    returning: tuple[sa.ColumnElement[Any], ...] = (),
) -> PreparedWrite:
    """INSERT into `table` of the columns `keys` (bind parameters of the same names),
    compiled once; with `returning`, RETURNING those columns."""
    stmt = table.insert().values({k: sa.bindparam(k, type_=table.c[k].type) for k in keys})
    return PreparedWrite(stmt.returning(*returning) if returning else stmt, dialect)


_AFTER_COMMIT = "conveyor_after_commit"
_AFTER_END = "conveyor_after_end"
_DOOMED = "conveyor_doomed"
_BEGUN = "conveyor_begun"  # a write-pool connection that has begun a transaction before


def after_commit(conn: Connection, action: Callable[[], object]) -> None:
    """Run `action` once the transaction of `conn` (a `Database.write`) has committed,
    after the writer is free again; never if it rolls back. For what must not hold the
    only writer (a log line written to a pipe) or must not be told of a change that did
    not happen."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(action)


def after_end(conn: Connection, action: Callable[[], object]) -> None:
    """Run `action` once the transaction of `conn` (a `Database.write`) has ended,
    committed or rolled back, after the after_commit actions."""
    conn.info.setdefault(_AFTER_END, []).append(action)


def _run_each(actions: Iterable[Callable[[], object]], when: str) -> None:
    # Each on its own: the transaction is over, and an action that fails must neither
    # keep the others from running nor make the caller think the change was not stored.
    for action in actions:
        try:
            action()
        except Exception:
            log.exception("%s: %r failed", when, action)


@contextlib.contextmanager
def savepoint(conn: Connection) -> Iterator[None]:
    """A part of the transaction of `conn` (a `Database.write`) that, if it raises, is
    undone alone, with the after_commit actions it asked for; what came before it is
    committed all the same. Where the database cannot undo the part alone (SQLite rolls
    the whole transaction back on some errors, a full disk say; the connection is gone),
    the transaction is doomed: `Database.write` raises instead of committing.

    On the driver's connection: through SQLAlchemy (`begin_nested`) the statements cost
    about 0.2 ms more, with SQLite's one writer held. It must never end the transaction
    itself: on PostgreSQL the rest of the write would be autocommitted
    (_begin_on_checkout)."""
    # Taken now: a connection dropped in the part refuses even `info` later.
    info = conn.info
    actions = info.setdefault(_AFTER_COMMIT, [])
    before = len(actions)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        _doomed_unless(info, cursor, "SAVEPOINT conveyor_part")
        try:
            yield
        except BaseException:
            del actions[before:]
            _doomed_unless(info, cursor, "ROLLBACK TO SAVEPOINT conveyor_part")
            raise
        _doomed_unless(info, cursor, "RELEASE SAVEPOINT conveyor_part")
    finally:
        cursor.close()


def _doomed_unless(info: dict[Any, Any], cursor: Any, statement: str) -> None:
    try:
        cursor.execute(statement)
    except Exception as exc:
        info[_DOOMED] = exc
        raise


class Database:
    """One database, with read and write transactions.

    On PostgreSQL writes have a pool of their own whose connections begin their
    transaction as they are handed out, which tells a dead one: after a restart of the
    server, a write (whose body cannot simply be run again) never meets a dead
    connection (_begin_on_checkout). Reads keep the unpinged pool of the hot
    path and run once more on a dropped connection (read_rows)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer: Engine
        self._counting = threading.Lock()
        self.writes_begun = 0  # write transactions opened: what a task costs, counted
        # SQLite has one writer at a time. Its busy handler makes a waiting writer
        # sleep and poll (1, 2, 5, 10… ms), so this process's own writers queue on a
        # lock instead and each starts the moment the last one commits; the busy
        # timeout still covers writers in other processes (the CLI, say). Reentrant, so
        # a nested write fails on SQLite's timeout as it always has, not in a deadlock.
        self._write_lock: threading.RLock | None = None
        # SQLite: the one connection every write of this process takes in turn (see
        # _sqlite_write); None until the first write.
        self._held: Connection | None = None
        self._write_owner: int | None = None  # the thread in a write, for a nested one
        self._shared_writer = False
        if engine.dialect.name == "sqlite":
            self._write_lock = threading.RLock()
            # A pool of its own: reads must not wait for a connection a writer holds. An
            # in-memory database is one connection's, so it stays shared.
            self._shared_writer = engine.url.database in (None, "", ":memory:")
            writer = engine if self._shared_writer else make_engine(engine.url, *SQLITE_WRITE_POOL)
            self._writer = writer.execution_options(sqlite_begin=None)
            os.register_at_fork(after_in_child=functools.partial(_forked, weakref.ref(self)))
        else:
            self._writer = make_engine(engine.url, WRITE_POOL_SIZE, WRITE_POOL_OVERFLOW)
            _begin_on_checkout(self._writer)

    @classmethod
    def from_url(cls, url: str) -> "Database":
        return cls(make_engine(url))

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def reads_wait_on_io(self) -> bool:
        """False for SQLite: its reads are local and, in WAL mode, never wait for a
        writer, so a short one may run on the event loop (docs/adr/0004)."""
        return not self.is_sqlite

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def read_rows(self, query: PreparedQuery, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run one prepared read: a single statement, so it needs no transaction.

        On PostgreSQL it runs in autocommit (one round trip instead of BEGIN, query,
        ROLLBACK). The pool does not ping connections on checkout; a read that finds its
        connection dead (the server restarted) drops it and runs once more.
        """
        return self.read_together((query,), params)[0]

    def read_together(
        self, queries: Sequence[PreparedQuery], params: dict[str, Any]
    ) -> list[list[tuple[Any, ...]]]:
        """Run prepared reads that take the same parameters on one connection, as
        read_rows runs one. On SQLite they share one snapshot (a read transaction:
        none of them sees a write the others do not); on PostgreSQL each statement has
        its own, as in the READ COMMITTED transaction they would otherwise take."""
        snapshot = self.is_sqlite and len(queries) > 1
        for attempt in (1, 2):
            conn = self.engine.raw_connection()
            dbapi_conn: Any = conn.dbapi_connection
            try:
                if not self.is_sqlite:
                    dbapi_conn.autocommit = True
                try:
                    if not snapshot:
                        return [query.rows(dbapi_conn, params) for query in queries]
                    dbapi_conn.execute("BEGIN")
                    try:
                        return [query.rows(dbapi_conn, params) for query in queries]
                    finally:
                        dbapi_conn.rollback()
                finally:
                    if not self.is_sqlite and not dbapi_conn.closed:
                        dbapi_conn.autocommit = False
            except self.engine.dialect.loaded_dbapi.Error as exc:
                if attempt == 2 or not self.engine.dialect.is_disconnect(exc, dbapi_conn, None):
                    raise
                # The others in the pool date from before the restart too: each is
                # recycled at its next checkout. (A dispose() would orphan the ones other
                # threads hold: they would return to a dropped pool, and stay open there.)
                self.engine.pool._invalidate(conn, exc)
            finally:
                conn.close()
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits on success and rolls back on any exception."""
        with self._counting:
            self.writes_begun += 1
        transaction = self._writer.begin() if self._write_lock is None else self._sqlite_write()
        ended: list[Callable[[], object]] = []
        try:
            with transaction as conn:
                # Taken now: a connection the server dropped mid-transaction refuses
                # even `info` later, and that error would hide the one that says why.
                info = conn.info
                try:
                    yield conn
                    doomed = info.pop(_DOOMED, None)
                    if doomed is not None:  # a part could not be undone alone (savepoint)
                        raise doomed
                finally:
                    committed = info.pop(_AFTER_COMMIT, ())
                    ended = info.pop(_AFTER_END, [])
                    info.pop(_DOOMED, None)
            # Reached only once the transaction has committed; outside the write lock.
            _run_each(committed, "after a commit")
        finally:
            _run_each(ended, "after a transaction")

    @contextlib.contextmanager
    def _sqlite_write(self) -> Iterator[Connection]:
        """SQLite's write transaction, with as little as possible done holding the one
        writer. Every write of this process takes the same connection in turn, under
        the lock: its page cache and its prepared statements stay warm, as no other
        connection of the process writes (one per write, from a pool, reread the pages
        a transaction needs on each write: about 11 reads of the file a write,
        docs/benchmarks.md). The transaction is opened and ended on the driver's
        connection (through SQLAlchemy's events and statement pipeline that costs about
        150 µs a transaction, against 10 µs; every other writer waits meanwhile)."""
        assert self._write_lock is not None
        me = threading.get_ident()
        if self._write_owner == me or self._shared_writer:
            # A write inside a write, on a connection of its own: it fails on SQLite's
            # busy timeout, as it always has. An in-memory database shares the engine's.
            with self._pooled_write() as conn:
                yield conn
            return
        with self._write_lock:
            self._write_owner = me
            try:
                conn = self._held_connection()
                try:
                    with self._sqlite_transaction(conn) as yielded:
                        yield yielded
                except BaseException:
                    # Back to the pool, which resets it: this one may be in any state.
                    self._held = None
                    with contextlib.suppress(Exception):
                        conn.close()
                    raise
            finally:
                self._write_owner = None

    def _held_connection(self) -> Connection:
        if self._held is None or self._held.invalidated:
            self._held = self._writer.connect()
        return self._held

    def forget_connections_after_fork(self) -> None:
        """In a forked child: the parent's connections are neither used nor closed here
        (SQLite's own locks would go with them), and the process's write lock is new:
        a thread of the parent that held it does not run here. (A write the parent had
        begun in SQLite still holds the file's lock for this process's connections:
        SQLite cannot be shared across a fork mid-write.)"""
        self._write_lock = threading.RLock() if self._write_lock is not None else None
        self._write_owner = None
        if self._held is not None:
            # Kept from the garbage collector, whose finaliser would roll the parent's
            # connection back and hand it to this process's pool.
            _PARENTS_CONNECTIONS.append(self._held)
            self._held = None
        self._writer.dispose(close=False)
        self.engine.dispose(close=False)

    @contextlib.contextmanager
    def _pooled_write(self) -> Iterator[Connection]:
        assert self._write_lock is not None
        conn = self._writer.connect()
        try:
            with self._write_lock, self._sqlite_transaction(conn) as yielded:
                yield yielded
        finally:
            conn.close()

    @contextlib.contextmanager
    def _sqlite_transaction(self, conn: Connection) -> Iterator[Connection]:
        # SQLAlchemy's transaction, opened without a statement (the writer's begin
        # event is off): code that asks whether it runs in one (Alembic, which would
        # otherwise commit after each migration) is told so, and COMMIT goes through
        # SQLAlchemy, which wraps its errors.
        conn.begin()
        dbapi_conn: Any = conn.connection.dbapi_connection
        try:
            dbapi_conn.execute("BEGIN IMMEDIATE")
        except self.engine.dialect.loaded_dbapi.Error as exc:
            with contextlib.suppress(Exception):
                conn.rollback()
            # Wrapped as SQLAlchemy wraps a statement's: "database is locked" reaches
            # callers as the OperationalError they retry on.
            raise sa.exc.DBAPIError.instance(
                "BEGIN IMMEDIATE", None, exc, self.engine.dialect.loaded_dbapi.Error
            ) from exc
        try:
            yield conn
            conn.commit()
        except BaseException:
            # The driver's first: SQLite's writer must not stay held. Each on its own,
            # and quietly: the body's error is the one to see.
            with contextlib.suppress(Exception):
                dbapi_conn.rollback()
            with contextlib.suppress(Exception):
                conn.rollback()
            raise

    def dispose(self) -> None:
        # Not from under a write still under way (a thread stopping late): it keeps its
        # connection, as a pooled one checked out would be kept.
        lock = self._write_lock
        inside = self._write_owner == threading.get_ident()
        if lock is not None and not inside and lock.acquire(timeout=DISPOSE_WAIT_S):
            try:
                held, self._held = self._held, None
                if held is not None:
                    with contextlib.suppress(Exception):
                        held.close()
            finally:
                lock.release()
        self.engine.dispose()
        if not self._shared_writer:  # an in-memory database's writer is the engine's pool
            self._writer.dispose()

    def unreachable(self, exc: BaseException) -> bool:
        """Whether `exc` says the database cannot be reached or used for now (it is down,
        restarting, its disk is gone or it is locked past the busy timeout), as opposed
        to a query that is wrong: the first is worth a retry, the second a bug report."""
        dbapi = self.engine.dialect.loaded_dbapi
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            orig: BaseException | None = exc.orig
        elif isinstance(exc, dbapi.OperationalError | dbapi.InterfaceError):
            orig = exc  # from a raw DBAPI connection (the prepared reads)
        else:
            return False
        if not self.is_sqlite:
            return True  # psycopg's OperationalError: connection, server or resource
        return any(m in str(orig) for m in _SQLITE_UNAVAILABLE)


def _forked(ref: "weakref.ref[Database]") -> None:
    database = ref()
    if database is not None:
        database.forget_connections_after_fork()
