"""PostgreSQL reads on the event loop, for the API's hot path (docs/adr/0004).

The lookup by commit is two reads (the token, then the tasks). Through the sync pool
each is handed to a thread and back, and each is a round trip; here both go in one
pipeline on an asyncio connection: one round trip, no thread. Connections belong to
the event loop that opened them; a request on another loop (tests start several) gets
its own.
"""

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from conveyor.domain.principals import TokenInfo
from conveyor.domain.views import TaskWithCommits
from conveyor.storage.db import Database, PreparedQuery
from conveyor.storage.task_store import SqlTaskStore, lookups_of
from conveyor.storage.token_store import SqlTokenStore, token_of

MAX_IDLE = 8

Read = tuple[PreparedQuery, dict[str, Any]]


class AsyncReads:
    """A few autocommit asyncio connections, kept per event loop."""

    def __init__(self, db: Database) -> None:
        url = db.engine.url.set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._idle: dict[asyncio.AbstractEventLoop, list[psycopg.AsyncConnection[TupleRow]]] = {}

    async def rows(self, reads: Sequence[Read]) -> list[list[tuple[Any, ...]]]:
        """Each read's rows, all sent at once. A connection the server dropped (it
        restarted) is closed and the reads run once more on a new one."""
        for attempt in (1, 2):
            conn = await self._connection()
            try:
                found = await _run(conn, reads)
            except psycopg.OperationalError:
                dropped = conn.broken
                await conn.close()
                if attempt == 2 or not dropped:
                    raise
                continue
            except BaseException:
                await conn.close()
                raise
            self._release(conn)
            return found
        raise AssertionError("unreachable")

    async def _connection(self) -> psycopg.AsyncConnection[TupleRow]:
        idle = self._idle.get(asyncio.get_running_loop())
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.broken:
                return conn
        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    def _release(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        idle = self._idle.setdefault(asyncio.get_running_loop(), [])
        if len(idle) < MAX_IDLE:
            idle.append(conn)
        else:
            asyncio.get_running_loop().create_task(conn.close())

    async def close(self) -> None:
        """Close this loop's connections (the app's shutdown)."""
        for conn in self._idle.pop(asyncio.get_running_loop(), []):
            await conn.close()


async def _run(
    conn: psycopg.AsyncConnection[TupleRow], reads: Sequence[Read]
) -> list[list[tuple[Any, ...]]]:
    if len(reads) == 1:
        [(query, params)] = reads
        cursor = await conn.execute(query.sql, query.arguments(params))
        return [list(await cursor.fetchall())]
    async with conn.pipeline():
        cursors = [await conn.execute(q.sql, q.arguments(p)) for q, p in reads]
    return [list(await c.fetchall()) for c in cursors]


class SqlAsyncLookups:
    """services.ports.AsyncLookups on PostgreSQL."""

    def __init__(self, reads: AsyncReads, tokens: SqlTokenStore, tasks: SqlTaskStore) -> None:
        self._reads = reads
        self._tokens = tokens
        self._tasks = tasks

    async def token(self, token_hash: str) -> tuple[TokenInfo, str] | None:
        [rows] = await self._reads.rows([self._tokens.by_hash(token_hash)])
        return token_of(rows)

    async def token_and_tasks(
        self, token_hash: str, commit_prefix: str, limit: int
    ) -> tuple[tuple[TokenInfo, str] | None, list[TaskWithCommits]]:
        token_rows, task_rows = await self._reads.rows(
            [self._tokens.by_hash(token_hash), self._tasks.by_commit(commit_prefix, None, limit)]
        )
        return token_of(token_rows), lookups_of(task_rows)

    async def tasks(
        self, commit_prefix: str, workflows: frozenset[str], limit: int
    ) -> list[TaskWithCommits]:
        [rows] = await self._reads.rows([self._tasks.by_commit(commit_prefix, workflows, limit)])
        return lookups_of(rows)
