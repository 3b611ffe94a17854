"""Fault tests: Conveyor on a PostgreSQL and a Redis of the test's own, which the test
stops and starts again mid-stream."""

import gc
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_URL
from tests.e2e.services import PrivatePostgres, PrivateRedis
from tests.engine.conftest import engine_factory

__all__ = ["engine_factory"]  # the engine tests' fixture, on services of a test's own


@pytest.fixture(autouse=True)
def _once_per_suite() -> None:
    # These tests bring their own PostgreSQL: the run of the suite on the shared one
    # would only repeat them.
    if PG_URL:
        pytest.skip("fault tests run on services of their own; covered by the SQLite run")


@pytest.fixture(autouse=True)
def _collect_what_the_test_left() -> Iterator[None]:
    # Torn down after every other fixture of the test: a connection it left open is
    # reported here, against this test, not when the collector finds it in a later one.
    yield
    gc.collect()


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    # Not under pytest's own temp dirs: as root those are root's alone, and PostgreSQL
    # runs as its own user.
    home = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
    pg = PrivatePostgres(home)
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
