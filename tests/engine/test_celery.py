"""The celery executor with real worker processes, on Redis and on RabbitMQ."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from conveyor.domain.jobs import JobResult, JobRow, JobSpec, Outcome
from conveyor.services.ports import Executor
from conveyor.storage.job_store import SqlJobStore
from conveyor.storage.tables import jobs
from conveyor.wiring import ORPHAN_SWEEP_S
from tests.conftest import PG_URL, alive
from tests.engine.conftest import Engine
from tests.engine.test_sandbox import assert_confined, require_bubblewrap
from tests.server import free_port

BROKERS = {
    "redis": ("redis://127.0.0.1:6379/0", 6379),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", 5672),
}


def broker_url(kind: str) -> str:
    url, port = BROKERS[kind]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{kind} is not reachable on 127.0.0.1:{port} (CI needs it): {exc}")
        pytest.skip(f"{kind} is not reachable on 127.0.0.1:{port}")
    return url


class Workers:
    """`conveyor worker` processes, stopped (and their jobs' processes) at the end."""

    def __init__(self, engine: Engine, tmp_path: Path) -> None:
        self.engine = engine
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, concurrency: int = 2, queues: str = "", extra: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"worker{len(self.procs)}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "conveyor",
                    "worker",
                    "-c",
                    str(self.engine.config_path),
                    "--concurrency",
                    str(concurrency),
                    *(["--queues", queues] if queues else []),
                    *extra,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker did not start:\n{log.read_text()}")
            time.sleep(0.05)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT)  # cold shutdown: do not wait for jobs
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pids in self.engine.pids.glob("*.pids"):
            for pid in pids.read_text().split():
                if alive(int(pid)):
                    os.kill(int(pid), signal.SIGKILL)


CeleryFactory = Callable[..., tuple[Engine, Workers]]


@pytest.fixture(params=sorted(BROKERS))
def celery_factory(
    request: pytest.FixtureRequest, engine_factory: Callable[..., Engine], tmp_path: Path
) -> Iterator[CeleryFactory]:
    if (
        not PG_URL
        and os.environ.get("CONVEYOR_TEST_POSTGRES_RUN_FOLLOWS") == "1"
        and request.node.get_closest_marker("celery_on_sqlite_too") is None
    ):
        # A fleet runs celery with PostgreSQL: `make test` runs these there, once.
        pytest.skip("celery tests run in this suite's PostgreSQL run, as on a fleet")
    if request.node.get_closest_marker("one_broker") is not None and request.param != "redis":
        pytest.skip("what it tests happens in the runner and the database: run on Redis")
    made: list[Workers] = []

    def factory(timeout: str = "1h") -> tuple[Engine, Workers]:
        url = broker_url(request.param)
        queue = f"test-{uuid.uuid4().hex[:12]}"
        extra = f"executor: celery\nbroker_url: '{url}'\nqueue: {queue}\n"
        extra += "heartbeat_timeout: 3s\nmax_parallel_tasks: 8\n"
        engine = engine_factory(timeout=timeout, extra=extra, gpu_queue=f"{queue}-gpu")
        workers = Workers(engine, tmp_path)
        made.append(workers)
        return engine, workers

    yield factory
    for workers in made:
        workers.stop()


@pytest.fixture
def celery_engine(celery_factory: CeleryFactory) -> tuple[Engine, Workers]:
    return celery_factory()


@pytest.mark.celery_on_sqlite_too
def test_pass_fail_and_the_deploy_sees_the_build_output(
    celery_engine: tuple[Engine, Workers],
) -> None:
    engine, workers = celery_engine
    port = free_port()
    workers.start(extra=("--metrics-port", str(port)))
    passing = engine.create("parallel", api="", web="")
    failing = engine.create("parallel", api="", web="fail")
    assert engine.wait(passing, workflow="parallel")["status"] == "passed"
    assert engine.wait(failing, workflow="parallel")["status"] == "failed"
    # The worker ran every job, and its metrics say so (the deploys of the failing task
    # were skipped: never run).
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finished = {
        (s.labels["stage"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
        if s.name == "conveyor_jobs_finished_total"
    }
    assert finished == {("build", "passed"): 3, ("build", "failed"): 1, ("deploy", "passed"): 2}
    for job in engine.jobs(passing, "parallel"):
        text = engine.log(job, "parallel")
        if job.stage == "deploy":
            assert f"deploy {job.service} reg/{job.service}:{passing} to dev" in text
        else:
            assert "token=***" in text and "hunter2" not in text
    states = {(j.stage, j.service): j.state for j in engine.jobs(failing, "parallel")}
    assert states[("build", "web")] == "failed"
    assert states[("deploy", "api")] == states[("deploy", "web")] == "skipped"


@pytest.mark.one_broker
def test_restart_reruns_only_what_did_not_pass(celery_engine: tuple[Engine, Workers]) -> None:
    engine, workers = celery_engine
    workers.start()
    task = engine.create(api="", web="flaky")
    assert engine.wait(task)["status"] == "failed"
    assert engine.act("restart", task) == 200
    result = engine.wait(task)
    if result["status"] != "passed":
        for job in engine.jobs(task):
            print("JOB", job, repr(engine.log(job)))
    assert result["status"] == "passed"
    builds = [(j.attempt, j.service, j.state) for j in engine.jobs(task) if j.stage == "build"]
    assert sorted(builds) == [(1, "api", "passed"), (1, "web", "failed"), (2, "web", "passed")]


@pytest.mark.one_broker
def test_timeout_ends_the_task_and_its_processes(celery_factory: CeleryFactory) -> None:
    engine, workers = celery_factory(timeout="1s")
    workers.start()
    task = engine.create(api="sleep")
    pids = engine.wait_for_pids(task)
    assert engine.wait(task)["status"] == "timeout"
    [build] = [j for j in engine.jobs(task) if j.stage == "build"]
    assert "timed out after 1s" in engine.log(build)
    assert [p for p in pids if alive(p)] == []


@pytest.mark.one_broker
def test_cancel_while_queued_and_while_running_leaves_no_process(
    celery_engine: tuple[Engine, Workers],
) -> None:
    engine, workers = celery_engine
    workers.start()
    running = engine.create(api="sleep")
    pids = engine.wait_for_pids(running)
    queued = engine.create(web="")  # serial: waits behind the first
    assert engine.act("cancel", queued) == 200
    assert engine.act("cancel", running) == 200
    engine.wait(running, {"cancelled"})
    deadline = time.monotonic() + 1 + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if alive(p)] == []
    assert all(j.state == "cancelled" and engine.log(j) == "" for j in engine.jobs(queued))


def test_a_killed_worker_fails_its_job_as_lost_and_a_restart_runs_it_elsewhere(
    celery_engine: tuple[Engine, Workers],
) -> None:
    engine, workers = celery_engine
    doomed = workers.start()
    task = engine.create(api="sleep")
    pids = engine.wait_for_pids(task)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    t0 = time.monotonic()
    assert engine.wait(task)["status"] == "failed"
    assert time.monotonic() - t0 < 3 + 5 + 1  # heartbeat timeout, reap period, a poll
    [build] = [j for j in engine.jobs(task) if j.stage == "build"]
    assert build.state == "failed"
    # Another worker on this host ends what the dead one left running...
    workers.start()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if alive(p)] == []
    # ...and runs the restarted task (attempt 2 checks that attempt 1's processes are gone).
    assert engine.act("restart", task) == 200
    assert engine.wait(task)["status"] == "passed"


def events(engine: Engine) -> list[str]:
    path = engine.pids / "events"
    return path.read_text().splitlines() if path.exists() else []


def test_two_workers_share_40_tasks_and_every_job_runs_once(
    celery_engine: tuple[Engine, Workers],
) -> None:
    engine, workers = celery_engine
    workers.start()
    workers.start()
    tasks = [engine.create("parallel", api="") for _ in range(40)]
    for task in tasks:
        assert engine.wait(task, workflow="parallel", timeout=120)["status"] == "passed"
    ran = [line.split()[0] for line in events(engine)]
    assert len(ran) == 80
    assert len(set(ran)) == 80, "a job ran twice"
    with engine.container.db.read() as conn:
        runners = conn.execute(sa.select(jobs.c.runner_host).distinct()).scalars().all()
    assert len(runners) == 2, runners


class Twice:
    """A broker that delivers every job twice."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    def submit(self, job: JobSpec) -> None:
        self.inner.submit(job)
        self.inner.submit(job)

    def shutdown(self, wait: bool) -> None:
        self.inner.shutdown(wait)


def test_a_job_delivered_twice_runs_once(
    celery_engine: tuple[Engine, Workers], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, workers = celery_engine
    scheduler = engine.container.scheduler
    assert scheduler is not None
    monkeypatch.setattr(scheduler, "_executor", Twice(scheduler._executor))
    workers.start(concurrency=4)
    task = engine.create("parallel", api="", web="")
    assert engine.wait(task, workflow="parallel")["status"] == "passed"
    ran = [line.split()[0] for line in events(engine)]
    assert sorted(ran) == sorted(str(j.id) for j in engine.jobs(task, "parallel"))


def test_a_step_with_a_queue_runs_only_on_workers_that_listen_there(
    celery_engine: tuple[Engine, Workers],
) -> None:
    engine, workers = celery_engine
    workers.start()  # the default queue only
    task = engine.create("parallel", gpu="")

    def build_state() -> str:
        [build] = [j for j in engine.jobs(task, "parallel") if j.stage == "build"]
        return build.state

    deadline = time.monotonic() + 10
    while build_state() != "queued":
        assert time.monotonic() < deadline, build_state()
        time.sleep(0.02)
    # Handed to the broker, on a queue no worker listens to: it stays there.
    until = time.monotonic() + 3
    while time.monotonic() < until:
        assert build_state() == "queued"
        assert engine.item(task, "parallel")["status"] == "running"
        time.sleep(0.2)
    queue = engine.container.config.services["gpu"].build.queue
    assert queue is not None
    workers.start(queues=queue)
    assert engine.wait(task, workflow="parallel")["status"] == "passed"
    [build] = [j for j in engine.jobs(task, "parallel") if j.stage == "build"]
    assert "built on the gpu queue" in engine.log(build, "parallel")


@pytest.mark.one_broker
def test_a_worker_stops_what_escaped_a_job_at_its_end_and_on_cancel(
    celery_engine: tuple[Engine, Workers],
) -> None:
    engine, workers = celery_engine
    workers.start()
    passing = engine.create("parallel", api="escape")
    assert engine.wait(passing, workflow="parallel")["status"] == "passed"
    assert [p for p in engine.wait_for_pids(passing, count=3) if alive(p)] == []
    hanging = engine.create("parallel", api="escape-hang")
    pids = engine.wait_for_pids(hanging, count=3)
    assert engine.act("cancel", hanging, "parallel") == 200
    engine.wait(hanging, {"cancelled"}, "parallel")
    deadline = time.monotonic() + 1 + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if alive(p)] == []


@pytest.mark.one_broker
def test_a_worker_records_a_timeout_on_time_though_an_escaped_child_holds_the_output(
    celery_factory: CeleryFactory,
) -> None:
    engine, workers = celery_factory(timeout="1s")
    workers.start()
    task = engine.create(api="escape-hang")
    pids = engine.wait_for_pids(task, count=3)
    t0 = time.monotonic()
    assert engine.wait(task, timeout=1 + 1 + 10)["status"] == "timeout"
    assert time.monotonic() - t0 < 1 + 1 + 5
    assert [p for p in pids if alive(p)] == []


@pytest.mark.one_broker
def test_a_worker_runs_a_sandboxed_service_confined(celery_engine: tuple[Engine, Workers]) -> None:
    require_bubblewrap()
    engine, workers = celery_engine
    workers.start()
    task = engine.create("parallel", jail="")
    assert engine.wait(task, workflow="parallel")["status"] == "passed"
    assert_confined(engine, task)


@pytest.mark.one_broker
def test_a_live_worker_stops_what_a_killed_one_left_at_once(
    celery_engine: tuple[Engine, Workers],
) -> None:
    """No new worker has to start on the host: one already there sweeps the orphans of
    a dead one within its sweep period, and fails the job with the reason."""
    engine, workers = celery_engine
    doomed = workers.start(concurrency=1)
    task = engine.create(api="escape-hang")
    pids = engine.wait_for_pids(task, count=3)
    workers.start(concurrency=1)  # the survivor, started after the job began elsewhere
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    # Within the sweep's period and the grace of the kill, the processes are gone and
    # the job failed (by the sweep, or by the heartbeat reaper, 3 s here, if first).
    deadline = time.monotonic() + ORPHAN_SWEEP_S + 1 + 5
    assert engine.wait(task, timeout=deadline - time.monotonic())["status"] == "failed"
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if alive(p)] == []


@pytest.mark.parametrize(
    "signals",
    [
        [signal.SIGTERM, signal.SIGTERM],
        [signal.SIGINT, signal.SIGINT],
        [signal.SIGTERM, signal.SIGQUIT],
        [signal.SIGQUIT],
    ],
)
def test_a_worker_told_to_stop_now_stops_its_jobs_and_exits(
    celery_engine: tuple[Engine, Workers], signals: list[signal.Signals]
) -> None:
    engine, workers = celery_engine
    worker = workers.start(concurrency=1)
    task = engine.create(api="escape-hang")
    pids = engine.wait_for_pids(task, count=3)
    first, *rest = signals
    worker.send_signal(first)
    if rest:
        # The first SIGTERM or Ctrl-C lets running jobs finish: the worker stays.
        with pytest.raises(subprocess.TimeoutExpired):
            worker.wait(timeout=1)
        worker.send_signal(rest[0])
    worker.wait(timeout=1 + 5 + 10)  # the grace, then Celery's own shutdown
    assert [p for p in pids if alive(p)] == []
    [build] = [j for j in engine.jobs(task) if j.stage == "build"]
    assert build.state == "failed"
    assert engine.wait(task)["status"] == "failed"
    detail = engine.client.get(f"/api/workflows/serial/tasks/{task}", headers=engine.headers)
    [job] = [j for j in detail.json()["jobs"] if j["stage"] == "build"]
    assert job["detail"] == "worker shut down while it ran"
    # Not through Celery's cold shutdown, which cannot stop a thread pool's jobs.
    assert "Unrecoverable error" not in (workers.tmp_path / "worker0.log").read_text()


@pytest.mark.skipif(
    not PG_URL, reason="LISTEN/NOTIFY is PostgreSQL's; on SQLite the scheduler polls"
)
def test_a_job_a_worker_ended_advances_its_task_without_the_schedulers_thread(
    engine_factory: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's listener advances the task a notification names on its own thread:
    a scheduler busy with a long pass does not hold the deploy back."""
    engine = engine_factory(extra="executor: celery\nbroker_url: 'memory://'\n")
    task = engine.create(api="")
    build = wait_for_job(engine, task, "build", "queued")
    busy = threading.Event()
    # From now on every pass of the scheduler's thread takes until the test ends.
    monkeypatch.setattr(engine.container.scheduler, "tick", lambda *_: busy.wait(60))
    try:
        store = SqlJobStore(engine.container.db)
        assert store.claim_job(build.id, "elsewhere:1", int(time.time()))
        assert store.finish_job(build.id, JobResult(Outcome.PASSED, 0, "ok"), int(time.time()))
        wait_for_job(engine, task, "deploy", "queued")
    finally:
        busy.set()


def wait_for_job(engine: Engine, task: int, stage: str, state: str) -> JobRow:
    deadline = time.monotonic() + 20
    while True:
        found = [j for j in engine.jobs(task) if j.stage == stage and j.state == state]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {stage} job became {state}"
        time.sleep(0.02)
