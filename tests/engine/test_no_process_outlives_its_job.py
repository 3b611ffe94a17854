"""End to end on the local executor: a job's processes that left its session end with
the job, whatever ends it; the job's end is recorded on time."""

import time
from collections.abc import Callable

from tests.conftest import alive
from tests.engine.conftest import Engine

GRACE = 1  # cancel_grace of the engine's config


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


def test_a_passing_job_stops_what_escaped_its_session(engine: Engine) -> None:
    task = engine.create(api="escape")
    assert engine.wait(task, timeout=GRACE + 10)["status"] == "passed"
    pids = engine.wait_for_pids(task, count=3)
    assert [p for p in pids if alive(p)] == []
    build = engine.jobs(task)[0]
    assert "stopped 3 process(es) the script left running: sleep" in engine.log(build)


def test_cancel_stops_what_escaped_its_session(engine: Engine) -> None:
    task = engine.create(api="escape-hang")
    pids = engine.wait_for_pids(task, count=3)
    t0 = time.monotonic()
    assert engine.act("cancel", task) == 200
    assert engine.wait(task, {"cancelled"})["status"] == "cancelled"
    assert _gone_within(pids, GRACE + 5 - (time.monotonic() - t0)) == []
    while engine.jobs(task)[0].state == "running":
        assert time.monotonic() - t0 < GRACE + 5, "the job's end was not recorded"
        time.sleep(0.02)
    assert engine.jobs(task)[0].state == "cancelled"


def test_a_timeout_is_recorded_on_time_though_an_escaped_child_holds_the_output(
    engine_factory: Callable[..., Engine],
) -> None:
    engine = engine_factory(timeout="1s")
    task = engine.create(api="escape-hang")
    t0 = time.monotonic()
    assert engine.wait(task, timeout=1 + GRACE + 10)["status"] == "timeout"
    assert time.monotonic() - t0 < 1 + GRACE + 5
    assert [p for p in engine.wait_for_pids(task, count=3) if alive(p)] == []


def test_a_server_stop_stops_what_escaped_its_jobs(engine: Engine) -> None:
    task = engine.create(api="escape-hang")
    pids = engine.wait_for_pids(task, count=3)
    t0 = time.monotonic()
    engine.client.__exit__(None, None, None)  # the app's shutdown: the executor stops jobs
    assert time.monotonic() - t0 < GRACE + 5
    assert [p for p in pids if alive(p)] == []
    [build, _] = engine.jobs(task)
    assert build.state == "failed"
