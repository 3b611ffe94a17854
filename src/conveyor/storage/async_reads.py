"""PostgreSQL reads on the event loop, for the API's hot path (docs/adr/0004).

The lookup by commit reads the token and the tasks. Through the sync pool each read is
handed to a thread and back; here both are one statement on an asyncio connection: one
round trip, no thread, and no pipeline (whose bookkeeping cost more CPU than the second
statement it saved). A task's detail is four statements: those are sent together in a
pipeline, one round trip instead of four. Connections belong to the event loop that
opened them; a request on another loop (tests start several) gets its own.
"""

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from conveyor.domain.principals import TokenInfo
from conveyor.domain.views import TaskDetail, TaskWithCommits
from conveyor.storage.db import Database, PreparedQuery, silent_peer_deadline
from conveyor.storage.task_store import (
    SqlTaskStore,
    detail_of,
    detail_params,
    lookups_of,
    lookups_with_token,
)
from conveyor.storage.token_store import SqlTokenStore, token_of

# Per event loop: requests beyond this many wait for a connection, so a flood of
# lookups cannot take PostgreSQL's connection slots from the scheduler and the writes.
MAX_CONNECTIONS = 10
RECYCLE_AFTER_S = 3600  # as the sync pools' pool_recycle
# A read on the event loop that has no answer by then ends with the database's error,
# and the API answers 503: neither the request nor its connection slot waits for good.
# PostgreSQL cancels a statement that runs (or waits for a lock) that long; the kernel
# drops a connection whose peer has gone silent (db.SILENT_PEER_S, as long).
# Both cost a read nothing, where a timer on the loop for every read slowed the status
# route (docs/adr/0004-lookup-hot-path.md).
READ_TIMEOUT_S = 10.0

Read = tuple[PreparedQuery, dict[str, Any]]
_Conn = psycopg.AsyncConnection[TupleRow]
_Cursor = psycopg.AsyncCursor[TupleRow]


class _Pooled:
    """A connection with when it was opened (loop time) and the cursors its reads reuse:
    a cursor made for every read (with its adapters map and transformer) cost a lookup
    about a third of psycopg's CPU (docs/adr/0004)."""

    def __init__(self, conn: _Conn, opened: float) -> None:
        self.conn = conn
        self.opened = opened
        self._cursors: list[_Cursor] = []

    def cursors(self, n: int) -> list[_Cursor]:
        while len(self._cursors) < n:
            self._cursors.append(self.conn.cursor())
        return self._cursors[:n]


class _LoopConnections:
    """One event loop's connections: those idle, and a cap on those open."""

    def __init__(self) -> None:
        self.idle: list[_Pooled] = []
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self.closed = False


class AsyncReads:
    """A few autocommit asyncio connections, kept per event loop."""

    def __init__(self, db: Database) -> None:
        url = db.engine.url.set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopConnections] = (
            weakref.WeakKeyDictionary()
        )

    async def rows(self, read: Read) -> list[tuple[Any, ...]]:
        """The read's rows. When the server dropped the connection (it restarted), every
        idle one is dropped too and the read runs once more on a new connection."""
        query, params = read
        return (await self.rows_together([query], params))[0]

    async def rows_together(
        self, queries: Sequence[PreparedQuery], params: dict[str, Any]
    ) -> list[list[tuple[Any, ...]]]:
        """The rows of reads that take the same parameters, sent together on one
        connection (each its own statement: READ COMMITTED, as Database.read_together)."""
        loop = asyncio.get_running_loop()
        mine = self._loops.get(loop)
        if mine is None:
            mine = self._loops[loop] = _LoopConnections()
        async with mine.slots:
            for attempt in (1, 2):
                pooled = await self._connection(mine, fresh=attempt == 2)
                conn = pooled.conn
                try:
                    found = await _run_together(pooled, queries, params)
                except psycopg.OperationalError:
                    dropped = conn.broken
                    await conn.close()
                    if attempt == 2 or not dropped:
                        raise
                    for stale in mine.idle:  # from before the restart too
                        await stale.conn.close()
                    mine.idle.clear()
                    continue
                except BaseException:  # cancelled mid-read, say: its state is unknown
                    await conn.close()
                    raise
                if mine.closed or loop.time() - pooled.opened > RECYCLE_AFTER_S:
                    await conn.close()
                else:
                    mine.idle.append(pooled)
                return found
        raise AssertionError("unreachable")

    async def _connection(self, mine: _LoopConnections, fresh: bool) -> _Pooled:
        while mine.idle and not fresh:
            pooled = mine.idle.pop()
            if not pooled.conn.closed and not pooled.conn.broken:
                return pooled
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            **silent_peer_deadline(conninfo_to_dict(self._conninfo)),
        )
        try:
            # A SET once a connection, not a startup option: a pooler in front of the
            # database (PgBouncer) refuses startup options it does not know.
            await conn.execute(f"SET statement_timeout = {int(READ_TIMEOUT_S * 1000)}")
        except BaseException:
            await conn.close()
            raise
        return _Pooled(conn, asyncio.get_running_loop().time())

    async def close(self) -> None:
        """Close this loop's connections (the app's shutdown); one still in use is
        closed when its read ends."""
        mine = self._loops.get(asyncio.get_running_loop())
        if mine is None:
            return
        mine.closed = True
        for pooled in mine.idle:
            await pooled.conn.close()
        mine.idle.clear()


async def _run_together(
    pooled: _Pooled, queries: Sequence[PreparedQuery], params: dict[str, Any]
) -> list[list[tuple[Any, ...]]]:
    cursors = pooled.cursors(len(queries))
    if len(queries) == 1:
        await cursors[0].execute(queries[0].sql, queries[0].arguments(params))
        return [await cursors[0].fetchall()]
    # Several statements sent at once and answered at once: one round trip, not one
    # each (a pipeline's bookkeeping costs less than the round trips it saves here).
    async with pooled.conn.pipeline():
        for cursor, q in zip(cursors, queries, strict=True):
            await cursor.execute(q.sql, q.arguments(params))
    return [await cursor.fetchall() for cursor in cursors]


class SqlAsyncLookups:
    """services.ports.AsyncLookups on PostgreSQL."""

    def __init__(self, reads: AsyncReads, tokens: SqlTokenStore, tasks: SqlTaskStore) -> None:
        self._reads = reads
        self._tokens = tokens
        self._tasks = tasks

    async def token(self, token_hash: str) -> tuple[TokenInfo, str] | None:
        return token_of(await self._reads.rows(self._tokens.by_hash(token_hash)))

    async def token_and_tasks(
        self, token_hash: str, commit_prefix: str, limit: int, now: int
    ) -> tuple[tuple[TokenInfo, str] | None, list[TaskWithCommits]]:
        read = self._tasks.by_commit(commit_prefix, None, limit, token=(token_hash, now))
        token, tasks = lookups_with_token(await self._reads.rows(read))
        return token_of(token), tasks

    async def tasks(
        self, commit_prefix: str, workflows: frozenset[str], limit: int
    ) -> list[TaskWithCommits]:
        return lookups_of(
            await self._reads.rows(self._tasks.by_commit(commit_prefix, workflows, limit))
        )

    async def task_detail(self, workflow_name: str, task_id: int) -> TaskDetail | None:
        reads = self._tasks.detail_reads
        return detail_of(
            await self._reads.rows_together(reads, detail_params(workflow_name, task_id))
        )
