"""PostgreSQL tells the server when a job result is committed, and only then."""

import threading

import pytest

from conveyor.storage.db import Database
from conveyor.storage.notify import JobListener, notify_in
from tests.conftest import PG_URL

pytestmark = pytest.mark.skipif(
    not PG_URL, reason="LISTEN/NOTIFY is PostgreSQL's; on SQLite the scheduler polls"
)


class Boom(Exception):
    pass


def test_a_committed_result_wakes_the_listener_and_a_rolled_back_one_does_not(
    database: Database,
) -> None:
    woken = threading.Event()
    listener = JobListener(database.engine.url.render_as_string(hide_password=False), woken.set)
    listener.start()
    try:
        assert woken.wait(10), "the listener wakes once when it starts listening"
        woken.clear()
        with pytest.raises(Boom), database.write() as conn:
            notify_in(conn)
            raise Boom
        assert not woken.wait(1.5)
        with database.write() as conn:
            notify_in(conn)
        assert woken.wait(5)
    finally:
        listener.stop()
