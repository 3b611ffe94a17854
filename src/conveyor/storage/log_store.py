"""Job logs in the database, for runners that are not on the server's machine."""

import time
from typing import Any

import sqlalchemy as sa

from conveyor.storage.db import Database
from conveyor.storage.tables import job_log_chunks

CHUNK_BYTES = 64 * 1024
FLUSH_S = 0.5


class DbLogSink:
    """Buffers a job's output and stores it in chunks: at 64 KiB, or every half second."""

    def __init__(self, db: Database, job_id: int) -> None:
        self._db = db
        self._job_id = job_id
        self._offset = self._stored_size()
        self._buffer = bytearray()
        self._last_flush = time.monotonic()

    def _stored_size(self) -> int:
        with self._db.read() as conn:
            size = conn.execute(
                sa.select(sa.func.max(job_log_chunks.c.end_offset)).where(
                    job_log_chunks.c.job_id == self._job_id
                )
            ).scalar_one()
        return int(size or 0)

    def append(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= CHUNK_BYTES:
            self.flush()

    def flush_if_due(self) -> None:
        if self._buffer and time.monotonic() - self._last_flush >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        data = bytes(self._buffer)
        self._buffer.clear()
        with self._db.write() as conn:
            conn.execute(
                job_log_chunks.insert().values(
                    job_id=self._job_id,
                    start_offset=self._offset,
                    end_offset=self._offset + len(data),
                    data=data,
                )
            )
        self._offset += len(data)

    def close(self) -> None:
        self.flush()


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
