"""Wake the server when a remote runner ends a job: PostgreSQL LISTEN/NOTIFY.

A worker writes a job's result and a notification naming the job's task in one
transaction (the notification is delivered only if the result is committed); the server
listens on a connection of its own and advances that task on the listening thread, as a
local runner's thread does (`Scheduler.job_ended_elsewhere`), not in a pass over every
active task. SQLite has no such
thing: there the scheduler's poll sees results.
"""

import logging
import threading
from collections.abc import Callable

import psycopg
import sqlalchemy as sa
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import Connection

from conveyor.storage.db import silent_peer_deadline

CHANNEL = "conveyor_jobs"
log = logging.getLogger("conveyor.notify")


def notify_in(conn: Connection, job_id: int) -> None:
    """Queue a notification naming job `job_id`'s task in `conn`'s transaction
    (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "SELECT pg_notify(%s, task_pk::text) FROM jobs WHERE id = %s", (CHANNEL, job_id)
        )


def task_named(payload: str) -> int | None:
    """The task a notification names; None (every task) for one that names none, as
    workers before 2026-11-30 sent, or that anyone else sent on the channel."""
    try:
        return int(payload)
    except ValueError:
        return None


class JobListener:
    """A thread that calls `on_notify` for every job result committed anywhere, with the
    job's task, or None when every task should be looked at (it may have missed some)."""

    def __init__(self, database_url: str, on_notify: Callable[[int | None], None]) -> None:
        url = sa.make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._on_notify = on_notify
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conveyor-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # Keepalives: a server gone silent is found and listened to anew, not
                # waited on for good while workers' results go unheard.
                deadline = silent_peer_deadline(conninfo_to_dict(self._conninfo))
                connect = psycopg.connect(self._conninfo, autocommit=True, **deadline)
                with connect as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._on_notify(None)  # what ended while we were not listening
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._on_notify(task_named(note.payload))
            except psycopg.Error as exc:
                log.warning("listening for job results failed (%s); retrying", exc)
                self._stop.wait(1.0)
