"""PostgreSQL reads on the event loop: several sent together, and a restart survived."""

import asyncio
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from conveyor.storage import async_reads
from conveyor.storage.async_reads import AsyncReads
from conveyor.storage.db import Database, PreparedQuery
from conveyor.storage.tables import jobs, tasks
from tests.conftest import PG_URL, drop_connections
from tests.storage.conftest import a_running_job

pytestmark = pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (CONVEYOR_TEST_DATABASE_URL)")


def test_reads_sent_together_survive_the_server_dropping_the_connection(
    database: Database,
) -> None:
    """The first statement of the pipeline meets the dead connection: the reads run again
    on a new one, and each read's rows come back in its place."""
    task_pk, job_id = a_running_job(database)
    dialect = database.engine.dialect
    task_state = PreparedQuery(
        sa.select(tasks.c.state).where(tasks.c.id == sa.bindparam("task_pk")), dialect
    )
    job_ids = PreparedQuery(
        sa.select(jobs.c.id).where(jobs.c.task_pk == sa.bindparam("task_pk")), dialect
    )
    reads = AsyncReads(database)

    async def before_and_after_a_restart() -> list[Any]:
        try:
            found = [await reads.rows_together([task_state, job_ids], {"task_pk": task_pk})]
            assert drop_connections(database) >= 1  # the idle one the next reads take
            found.append(await reads.rows_together([task_state, job_ids], {"task_pk": task_pk}))
            return found
        finally:
            await reads.close()

    before, after = asyncio.run(before_and_after_a_restart())
    assert before == after == [[("running",)], [(job_id,)]]


def test_a_read_with_no_answer_ends_with_the_databases_error_and_frees_its_slot(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock held elsewhere stands for a database that stopped answering: the read
    ends at the deadline with an OperationalError (the API's 503), and every connection
    slot of the loop is free again for the reads after it."""
    monkeypatch.setattr(async_reads, "READ_TIMEOUT_S", 0.5)
    monkeypatch.setattr(async_reads, "MAX_CONNECTIONS", 1)
    task_pk, _ = a_running_job(database)
    state = PreparedQuery(
        sa.select(tasks.c.state).where(tasks.c.id == sa.bindparam("task_pk")),
        database.engine.dialect,
    )
    reads = AsyncReads(database)

    async def blocked_then_free() -> list[list[tuple[Any, ...]]]:
        try:
            with database.engine.connect() as holder:
                holder.execute(sa.text("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE"))
                with pytest.raises(psycopg.OperationalError, match="statement timeout"):
                    # Bounded here too: without the deadline the read would wait for good.
                    await asyncio.wait_for(reads.rows_together([state], {"task_pk": task_pk}), 10)
                holder.rollback()
            # With one slot only, this read would wait for good behind a leaked one.
            return await reads.rows_together([state], {"task_pk": task_pk})
        finally:
            await reads.close()

    assert asyncio.run(blocked_then_free()) == [[("running",)]]


def test_reads_of_different_shapes_on_one_connection_each_get_their_own_rows(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection keeps its cursors from read to read: a pipeline of two, one alone,
    then the pipeline again, each answered with its own rows and none of the last's."""
    monkeypatch.setattr(async_reads, "MAX_CONNECTIONS", 1)
    task_pk, job_id = a_running_job(database)
    dialect = database.engine.dialect
    by_task = {"task_pk": task_pk}
    task_state = PreparedQuery(
        sa.select(tasks.c.state).where(tasks.c.id == sa.bindparam("task_pk")), dialect
    )
    job_ids = PreparedQuery(
        sa.select(jobs.c.id).where(jobs.c.task_pk == sa.bindparam("task_pk")), dialect
    )
    no_job = PreparedQuery(
        sa.select(jobs.c.id).where(jobs.c.task_pk == sa.bindparam("task_pk") + 1000), dialect
    )
    reads = AsyncReads(database)

    async def in_turn() -> list[Any]:
        try:
            return [
                await reads.rows_together([task_state, job_ids], by_task),
                await reads.rows_together([job_ids], by_task),
                await reads.rows_together([no_job, task_state], by_task),
                await reads.rows_together([no_job], by_task),
            ]
        finally:
            await reads.close()

    assert asyncio.run(in_turn()) == [
        [[("running",)], [(job_id,)]],
        [[(job_id,)]],
        [[], [("running",)]],
        [[]],
    ]
