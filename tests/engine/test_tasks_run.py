"""Tasks really run: stages, outcomes, restart, timeout, cancel, serial and parallel."""

import time
from collections.abc import Callable

import sqlalchemy as sa

from conveyor.storage.tables import jobs
from conveyor.wiring import unix_now
from tests.conftest import alive
from tests.engine.conftest import Engine


def test_a_two_service_task_passes_end_to_end(engine: Engine) -> None:
    task = engine.create(api="", web="")
    item = engine.wait(task)
    assert item["status"] == "passed"
    assert item["create_time"] <= item["start_time"] <= item["end_time"]
    jobs = engine.jobs(task)
    assert sorted((j.stage, j.service, j.state) for j in jobs) == [
        ("build", "api", "passed"),
        ("build", "web", "passed"),
        ("deploy", "api", "passed"),
        ("deploy", "web", "passed"),
    ]
    for job in jobs:
        text = engine.log(job)
        if job.stage == "build":
            assert f"build {job.service} attempt 1" in text
        else:
            # The deploy sees the IMAGE its build wrote to $CONVEYOR_OUTPUT.
            assert f"deploy {job.service} reg/{job.service}:{task} to dev" in text
        assert text.index("checking out app") < text.index(f"{job.stage} passed")


def test_a_failing_build_fails_the_task_and_no_deploy_runs(engine: Engine) -> None:
    task = engine.create(api="", web="fail")
    assert engine.wait(task)["status"] == "failed"
    states = {(j.stage, j.service): j.state for j in engine.jobs(task)}
    assert states[("build", "web")] == "failed"
    assert states[("build", "api")] == "passed"
    assert states[("deploy", "api")] == "skipped"
    assert states[("deploy", "web")] == "skipped"
    deploys = [j for j in engine.jobs(task) if j.stage == "deploy"]
    assert all(engine.log(j) == "" for j in deploys)


def test_restart_reruns_only_what_did_not_pass(engine: Engine) -> None:
    task = engine.create(api="", web="flaky")
    assert engine.wait(task)["status"] == "failed"
    assert engine.act("restart", task) == 200
    assert engine.wait(task)["status"] == "passed"
    runs = [(j.attempt, j.stage, j.service, j.state) for j in engine.jobs(task)]
    assert sorted(runs) == [
        (1, "build", "api", "passed"),
        (1, "build", "web", "failed"),
        (1, "deploy", "api", "skipped"),
        (1, "deploy", "web", "skipped"),
        (2, "build", "web", "passed"),
        (2, "deploy", "api", "passed"),
        (2, "deploy", "web", "passed"),
    ]
    # The api build that passed on attempt 1 ran once, and its output still reached deploy.
    [api_deploy] = [
        j for j in engine.jobs(task) if (j.attempt, j.stage, j.service) == (2, "deploy", "api")
    ]
    assert f"deploy api reg/api:{task} to dev" in engine.log(api_deploy)


def test_timeout_ends_the_task_and_its_processes(engine_factory: Callable[..., Engine]) -> None:
    engine = engine_factory(timeout="1s")
    task = engine.create(api="sleep")
    pids = engine.wait_for_pids(task)
    assert engine.wait(task)["status"] == "timeout"
    assert [p for p in pids if alive(p)] == []
    # The script's pid is in the jobs table for whoever investigates (`echo $$`).
    [build] = [j for j in engine.jobs(task) if j.stage == "build"]
    with engine.container.db.read() as conn:
        recorded = conn.execute(sa.select(jobs.c.pid).where(jobs.c.id == build.id)).scalar()
    assert recorded == pids[-1]


def test_cancel_while_queued_never_runs_and_while_running_leaves_no_process(engine: Engine) -> None:
    first = engine.create(api="sleep")
    pids = engine.wait_for_pids(first)
    second = engine.create(web="")  # serial workflow: waits behind the first
    assert engine.item(second)["status"] == "created"
    assert engine.act("cancel", second) == 200
    assert engine.item(second)["status"] == "cancelled"
    t0 = time.monotonic()
    assert engine.act("cancel", first) == 200
    assert engine.item(first)["status"] == "cancelled"
    engine.wait(first, {"cancelled"})
    deadline = t0 + 1 + 5  # grace + 5 s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if alive(p)] == []
    # The one cancelled while queued never started a job.
    assert all(j.state == "cancelled" and engine.log(j) == "" for j in engine.jobs(second))


def test_a_serial_workflow_runs_tasks_one_after_another(engine: Engine) -> None:
    first = engine.create(api="sleep")
    engine.wait_for_pids(first)
    second = engine.create(web="")
    assert engine.container.scheduler is not None
    engine.container.scheduler.tick()  # a full pass: the second must still wait
    assert engine.item(second)["status"] == "created"
    assert engine.act("cancel", first) == 200
    assert engine.wait(second)["status"] == "passed"
    assert engine.item(second)["start_time"] >= engine.item(first)["end_time"]


def test_a_parallel_workflow_runs_tasks_at_once(engine: Engine) -> None:
    first = engine.create("parallel", api="sleep")
    second = engine.create("parallel", api="sleep")
    # Both are running at the same moment: each wrote its pids while the other sleeps.
    engine.wait_for_pids(first)
    engine.wait_for_pids(second)
    assert engine.item(first, "parallel")["status"] == "running"
    assert engine.item(second, "parallel")["status"] == "running"
    for task in (first, second):
        assert engine.act("cancel", task, "parallel") == 200
        engine.wait(task, {"cancelled"}, "parallel")


def test_a_restart_never_overlaps_the_processes_of_the_cancelled_attempt(engine: Engine) -> None:
    task = engine.create(api="sleep")
    pids = engine.wait_for_pids(task)
    assert engine.act("cancel", task) == 200
    # At once, while a child that ignores SIGTERM still waits for its SIGKILL; attempt 2's
    # script fails if any process of attempt 1 is alive when it starts.
    assert engine.act("restart", task) == 200
    assert engine.wait(task)["status"] == "passed"
    assert [p for p in pids if alive(p)] == []
    [old, new] = [j for j in engine.jobs(task) if j.stage == "build"]
    assert (old.attempt, old.state, new.attempt, new.state) == (1, "cancelled", 2, "passed")


def test_secrets_reach_the_script_but_not_the_log(engine: Engine) -> None:
    task = engine.create(api="")
    assert engine.wait(task)["status"] == "passed"
    [build] = [j for j in engine.jobs(task) if j.stage == "build"]
    text = engine.log(build)
    assert "token=***" in text
    assert "hunter2-secret" not in text


def test_a_job_whose_heartbeat_stops_fails_as_worker_lost(engine: Engine) -> None:
    task = engine.create(api="sleep")
    pids = engine.wait_for_pids(task)
    scheduler = engine.container.scheduler
    assert scheduler is not None
    # A pass an hour from now: every heartbeat written until then is stale.
    scheduler.reap_lost_jobs(unix_now() + 3600)
    scheduler.wake()
    assert engine.wait(task)["status"] == "failed"
    detail = engine.client.get(f"/api/workflows/serial/tasks/{task}", headers=engine.headers).json()
    assert detail["jobs"][0]["detail"] == "worker lost: no heartbeat"
    # A runner that is in fact alive sees its job ended and stops its processes.
    deadline = time.monotonic() + 1 + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if alive(p)] == []
