"""Where job logs are kept: in files on the runner's machine (the local executor), or
in the database in chunks (celery workers on other machines); written by a sink,
read from any byte offset by a store."""

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from conveyor.storage.db import Database, after_commit
from conveyor.storage.tables import job_log_chunks

log = logging.getLogger("conveyor.logs")

CHUNK_BYTES = 64 * 1024
FLUSH_S = 0.5
# While the database is away the log waits in memory, up to this much; past it the
# job fails ("cannot write the job's log") rather than the worker running out of memory.
MAX_PENDING_BYTES = 16 * 2**20
RETRY_MAX_S = 5.0
CLOSE_RETRY_S = 60.0


def _chunk_statements() -> tuple[sa.Insert, sa.Insert]:
    """A chunk stored at a known offset, and a sink's first chunk, which goes after what
    any earlier sink stored, found by the same statement (one round trip to the
    database, not a read before the write). Built once: SQLAlchemy keys its cache of
    compiled statements by walking each statement it is given."""
    c = job_log_chunks.c
    job_id = sa.bindparam("job_id", type_=sa.BigInteger)
    data = sa.bindparam("data", type_=sa.LargeBinary)
    later = job_log_chunks.insert().values(
        job_id=job_id,
        start_offset=sa.bindparam("start", type_=sa.BigInteger),
        end_offset=sa.bindparam("end", type_=sa.BigInteger),
        data=data,
    )
    stored = sa.func.coalesce(sa.func.max(c.end_offset), 0)
    size = sa.bindparam("size", type_=sa.BigInteger)
    row = sa.select(job_id, stored, stored + size, data).where(c.job_id == job_id)
    columns = ["job_id", "start_offset", "end_offset", "data"]
    first = job_log_chunks.insert().from_select(columns, row)
    return later.returning(c.end_offset), first.returning(c.end_offset)


_NEXT_CHUNK, _FIRST_CHUNK = _chunk_statements()


class DbLogSink:
    """Buffers a job's output and stores it in chunks: at 64 KiB, or every half second.

    Opening it touches no database (a worker claims its job first); a database that is
    away keeps the bytes buffered and retried with backoff, so an outage of the
    database costs a job nothing as long as the buffer holds.

    With `end_with_result`, closing it stores nothing: what is left goes into the
    transaction that records the job's result (`store_pending`, given to
    StoreJobReporter), so a trivial job's whole log costs no transaction of its own, and
    a job's end and its log's end are stored together or not at all."""

    def __init__(self, db: Database, job_id: int, end_with_result: bool = False) -> None:
        self._db = db
        self._job_id = job_id
        self._end_with_result = end_with_result
        self._offset: int | None = None
        # A write failed: it may have committed all the same (the answer was lost).
        self._unsure = False
        self._buffer = bytearray()
        self._last_flush = time.monotonic()
        self._retry_at = 0.0
        self._backoff = 0.0

    def append(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= CHUNK_BYTES:
            self._try_flush()

    def flush_if_due(self) -> None:
        if self._buffer and time.monotonic() - self._last_flush >= FLUSH_S:
            self._try_flush()

    def _try_flush(self) -> None:
        if time.monotonic() < self._retry_at:
            self._check_pending()
            return
        try:
            self.flush()
        except sa.exc.DBAPIError as exc:
            self._backoff = min(RETRY_MAX_S, max(0.25, self._backoff * 2))
            self._retry_at = time.monotonic() + self._backoff
            log.warning("job %s: log not stored yet (%s); retrying", self._job_id, exc.orig)
            self._check_pending()
        else:
            self._backoff = 0.0

    def _check_pending(self) -> None:
        if len(self._buffer) > MAX_PENDING_BYTES:
            raise OSError(f"the database has not taken {len(self._buffer)} bytes of it")

    def flush(self) -> None:
        """Store what is buffered; on a database error it stays buffered, and raises."""
        self._last_flush = time.monotonic()
        if self._unsure:
            with self._db.read() as conn:
                self._take_back_what_was_stored(conn)
        if self._buffer:
            with self._db.write() as conn:
                self.store_pending(conn)

    def store_pending(self, conn: Connection) -> None:
        """Store what is buffered in the transaction of `conn` (a `Database.write`); it
        leaves the buffer once that transaction has committed, not before: a commit
        that fails leaves it for the next try."""
        if self._unsure:
            self._take_back_what_was_stored(conn)
        if not self._buffer:
            return
        data = bytes(self._buffer)
        self._unsure = True
        end = conn.execute(*self._insert(data)).scalar_one()
        after_commit(conn, lambda: self._stored(end, len(data)))

    def _stored(self, end: int, size: int) -> None:
        self._offset, self._unsure = end, False
        del self._buffer[:size]

    def _take_back_what_was_stored(self, conn: Connection) -> None:
        """After a failed write: if it was stored all the same, drop what it stored from
        the buffer, so that the next try neither writes it twice nor, at the same
        offset, fails on it for good."""
        c = job_log_chunks.c
        last = conn.execute(
            sa.select(c.start_offset, c.end_offset, c.data)
            .where(c.job_id == self._job_id)
            .order_by(c.start_offset.desc())
            .limit(1)
        ).first()
        # The first chunk's offset was not known: a last chunk that begins the buffer is
        # taken as this sink's (only one runner claims a job, so none other writes here).
        if (
            last is not None
            and self._offset in (None, last.start_offset)
            and self._buffer.startswith(bytes(last.data))
        ):
            self._offset = last.end_offset
            del self._buffer[: len(last.data)]
        self._unsure = False

    def _insert(self, data: bytes) -> tuple[sa.Insert, dict[str, Any]]:
        """`data` stored after the log's end; the statement returns the new end."""
        if self._offset is not None:
            end = self._offset + len(data)
            return _NEXT_CHUNK, {"job_id": self._job_id, "start": self._offset, "end": end,
                                 "data": data}  # fmt: skip
        return _FIRST_CHUNK, {"job_id": self._job_id, "size": len(data), "data": data}

    def close(self) -> None:
        if self._end_with_result:
            return  # what is left is stored with the result (store_pending)
        deadline = time.monotonic() + CLOSE_RETRY_S
        pause = 0.25
        while True:
            try:
                self.flush()
                return
            except sa.exc.DBAPIError as exc:
                if time.monotonic() + pause > deadline:
                    raise OSError(f"the database did not take its end: {exc.orig}") from exc
                time.sleep(pause)  # the database is away; nothing else to do meanwhile
                pause = min(RETRY_MAX_S, pause * 2)


class DbLogStore:
    """Reads what DbLogSink stored, from any byte offset."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def read(self, job_id: int, offset: int, limit: int) -> tuple[bytes, int]:
        c = job_log_chunks.c
        with self._db.read() as conn:
            size = int(
                conn.execute(
                    sa.select(sa.func.max(c.end_offset)).where(c.job_id == job_id)
                ).scalar_one()
                or 0
            )
            rows: list[Any] = list(
                conn.execute(
                    sa.select(c.start_offset, c.data)
                    .where(
                        c.job_id == job_id, c.end_offset > offset, c.start_offset < offset + limit
                    )
                    .order_by(c.start_offset)
                )
            )
        out = bytearray()
        for start, data in rows:
            out += bytes(data)[max(0, offset - start) :]
        return bytes(out[:limit]), size


class FileLogSink:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")

    def append(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    def flush_if_due(self) -> None:
        pass

    def close(self) -> None:
        self._file.close()


class FileLogStore:
    """Job logs as the local runner writes them, under the data directory."""

    def __init__(self, path_of: Callable[[int], Path]) -> None:
        self._path_of = path_of

    def read(self, job_id: int, offset: int, limit: int) -> tuple[bytes, int]:
        path = self._path_of(job_id)
        try:
            with path.open("rb") as f:
                size = f.seek(0, 2)
                f.seek(min(offset, size))
                return f.read(limit), size
        except FileNotFoundError:
            return b"", 0
