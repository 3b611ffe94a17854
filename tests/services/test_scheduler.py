"""The scheduler's rules, one test each: `tick()` over a real database, with an executor
that records what it is given and refuses on demand. No sleeps: time is a counter."""

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from conveyor.domain.jobs import JobResult, JobRow, JobSpec, Outcome
from conveyor.domain.principals import Principal
from conveyor.domain.states import JobState, TaskState
from conveyor.domain.tasks import RepoRequest, TaskSpec
from conveyor.services.scheduler import RESEND_AFTER_S, Scheduler
from conveyor.services.tasks import CreateRequest, TargetRequest
from conveyor.settings import Config
from conveyor.storage.db import Database
from conveyor.storage.job_store import SqlJobStore, StoreJobReporter
from conveyor.storage.tables import jobs, tasks
from conveyor.wiring import Container
from tests.fixtures import WF

ADMIN = Principal(user="alice", roles=("admin",))


class BrokerDown(Exception):
    pass


class RecordingExecutor:
    def __init__(self) -> None:
        self.submitted: list[JobSpec] = []
        self.refused = 0
        self.down = False

    def submit(self, job: JobSpec) -> None:
        if self.down:
            self.refused += 1
            raise BrokerDown("connection refused")
        self.submitted.append(job)

    def shutdown(self, wait: bool) -> None:
        pass


class Clocks:
    """Unix seconds and a monotonic clock that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000
        self.mono = 0.0

    def advance(self, seconds: float) -> None:
        self.now += int(seconds)
        self.mono += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def executor() -> RecordingExecutor:
    return RecordingExecutor()


SchedulerFor = Callable[..., Scheduler]


@pytest.fixture
def scheduler_for(database: Database, executor: RecordingExecutor, clocks: Clocks) -> SchedulerFor:
    def make(config: Config) -> Scheduler:
        return Scheduler(
            config,
            SqlJobStore(database),
            executor,
            lambda: clocks.now,
            monotonic=lambda: clocks.mono,
        )

    return make


def create(container: Container, service: str = "web", workflow: str = WF) -> int:
    request = CreateRequest(
        workflow_name=workflow,
        env_name="dev" if workflow == WF else "prod",
        targets=(TargetRequest(service, (RepoRequest("dyliu", "main"),)),),
    )
    return container.tasks.create(ADMIN, request).task_id


def job_states(database: Database) -> list[str]:
    with database.read() as conn:
        return list(conn.execute(sa.select(jobs.c.state).order_by(jobs.c.id)).scalars())


def test_a_job_the_executor_refuses_goes_back_to_pending_and_is_sent_again_later(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler = scheduler_for(config)
    create(container)
    executor.down = True
    scheduler.tick()
    # Never left 'queued' where no runner would find it.
    assert job_states(database) == ["pending", "pending"]
    executor.down = False
    scheduler.tick()
    assert executor.submitted == []  # still backing off
    clocks.advance(1)
    scheduler.tick()
    assert [j.stage for j in executor.submitted] == ["build"]
    assert job_states(database) == ["queued", "pending"]


def test_the_backoff_doubles_while_the_executor_keeps_refusing(
    container: Container,
    config: Config,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler = scheduler_for(config)
    create(container)
    executor.down = True
    tried_at = []
    for second in range(16):
        refused = executor.refused
        scheduler.tick()
        if executor.refused > refused:
            tried_at.append(second)
        clocks.advance(1)
    assert tried_at == [0, 1, 3, 7, 15]  # again after 1, 2, 4 and 8 seconds


def test_one_task_that_cannot_be_scheduled_does_not_stall_the_others(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    scheduler_for: SchedulerFor,
) -> None:
    broken = create(container)
    create(container, workflow="team-b-deploy")
    with database.write() as conn:  # a task whose stored spec cannot be read any more
        conn.execute(
            tasks.update()
            .where(tasks.c.task_id == broken, tasks.c.workflow_name == WF)
            .values(spec={"broken": True})
        )
    scheduler_for(config).tick()
    assert [(j.workflow_name, j.stage) for j in executor.submitted] == [("team-b-deploy", "build")]


def test_queued_jobs_are_sent_again_when_the_server_starts(
    container: Container,
    config: Config,
    executor: RecordingExecutor,
    scheduler_for: SchedulerFor,
) -> None:
    create(container)
    scheduler_for(config).tick()
    assert len(executor.submitted) == 1
    # The broker lost the message; a new server sends it again.
    assert scheduler_for(config).resubmit_queued() == 1
    assert [j.job_id for j in executor.submitted] == [executor.submitted[0].job_id] * 2


def test_a_job_no_worker_takes_fails_after_queue_timeout_naming_the_queue(
    container: Container,
    config: Config,
    database: Database,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    celery = config.model_copy(
        update={"executor": "celery", "broker_url": "redis://x", "queue_timeout": 3600}
    )
    scheduler = scheduler_for(celery)
    create(container)
    scheduler.tick()
    assert job_states(database) == ["queued", "pending"]
    clocks.advance(3599)
    scheduler.reap_lost_jobs(clocks.now)
    scheduler.fail_untaken_jobs(clocks.now)
    assert job_states(database) == ["queued", "pending"]
    clocks.advance(2)
    scheduler.fail_untaken_jobs(clocks.now)
    scheduler.tick()
    assert job_states(database) == ["failed", "skipped"]
    with database.read() as conn:
        detail = conn.execute(sa.select(jobs.c.detail).order_by(jobs.c.id)).scalars().first()
        state = conn.execute(sa.select(tasks.c.state)).scalar_one()
    assert detail == "no worker took the job from queue conveyor in 1h"
    assert state == TaskState.FAILED


def test_the_local_executor_has_no_queue_timeout(
    container: Container,
    config: Config,
    database: Database,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler = scheduler_for(config)
    create(container)
    scheduler.tick()
    clocks.advance(10 * 3600)
    scheduler.fail_untaken_jobs(clocks.now)
    assert job_states(database)[0] == JobState.QUEUED


def test_a_job_no_worker_took_is_sent_again_every_five_minutes(
    container: Container,
    config: Config,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    """A broker restarted without persistence forgets what it held: the server sends the
    job again rather than wait for queue_timeout; a runner claims it once anyway."""
    celery = config.model_copy(update={"executor": "celery", "broker_url": "redis://x"})
    scheduler = scheduler_for(celery)
    create(container)
    scheduler.tick()
    assert len(executor.submitted) == 1
    clocks.advance(RESEND_AFTER_S - 1)
    scheduler.resend_untaken_jobs(clocks.now)
    assert len(executor.submitted) == 1
    clocks.advance(2)
    assert scheduler.resend_untaken_jobs(clocks.now) == 1
    assert scheduler.resend_untaken_jobs(clocks.now) == 0  # not again at once
    clocks.advance(RESEND_AFTER_S)
    assert scheduler.resend_untaken_jobs(clocks.now) == 1
    assert {j.job_id for j in executor.submitted} == {executor.submitted[0].job_id}


def run(store: SqlJobStore, job: JobSpec, outcome: Outcome, now: int) -> None:
    """What a runner reports: it claims the job, then finishes it with `outcome`."""
    assert store.claim_job(job.job_id, "host:1:1", now)
    store.finish_job(job.job_id, JobResult(outcome, 0, outcome.value), now)


def task_state(database: Database, task_id: int, workflow: str = WF) -> str:
    with database.read() as conn:
        return str(
            conn.execute(
                sa.select(tasks.c.state).where(
                    tasks.c.task_id == task_id, tasks.c.workflow_name == workflow
                )
            ).scalar_one()
        )


def test_a_serial_workflow_runs_one_task_at_a_time_first_in_first_out(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    first, second = create(container), create(container)
    scheduler.tick()
    assert [task_state(database, t) for t in (first, second)] == ["running", "queued"]
    [build] = executor.submitted
    run(store, build, Outcome.PASSED, clocks.now)
    scheduler.tick()
    [_, deploy] = executor.submitted
    run(store, deploy, Outcome.PASSED, clocks.now)
    scheduler.tick()
    assert [task_state(database, t) for t in (first, second)] == ["passed", "running"]


def test_max_parallel_tasks_caps_running_tasks_across_workflows(
    container: Container, config: Config, database: Database, scheduler_for: SchedulerFor
) -> None:
    one_slot = config.model_copy(update={"max_parallel_tasks": 1})
    first = create(container)
    other = create(container, workflow="team-b-deploy")
    scheduler_for(one_slot).tick()
    assert task_state(database, first) == "running"
    assert task_state(database, other, "team-b-deploy") == "queued"


def test_a_failed_build_skips_the_deploy_and_fails_the_task(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler = scheduler_for(config)
    task = create(container)
    scheduler.tick()
    run(SqlJobStore(database), executor.submitted[0], Outcome.FAILED, clocks.now)
    scheduler.tick()
    assert job_states(database) == ["failed", "skipped"]
    assert task_state(database, task) == "failed"
    assert len(executor.submitted) == 1  # no deploy was sent


def test_a_runner_that_stops_beating_is_reaped_as_lost(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler = scheduler_for(config)
    task = create(container)
    scheduler.tick()
    assert SqlJobStore(database).claim_job(executor.submitted[0].job_id, "host:1:1", clocks.now)
    clocks.advance(config.heartbeat_timeout + 1)
    scheduler.reap_lost_jobs(clocks.now)
    scheduler.tick()
    with database.read() as conn:
        detail = conn.execute(sa.select(jobs.c.detail).order_by(jobs.c.id)).scalars().first()
    assert (detail, task_state(database, task)) == ("worker lost: no heartbeat", "failed")


def test_a_restart_waits_until_the_attempt_it_replaces_has_stopped(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    task = create(container)
    scheduler.tick()
    old = executor.submitted[0]
    assert store.claim_job(old.job_id, "host:1:1", clocks.now)
    container.tasks.cancel(ADMIN, WF, task)  # cancelling: the runner still stops it
    container.tasks.restart(ADMIN, WF, task)
    scheduler.tick()
    assert task_state(database, task) == "queued"  # held: attempt 1 still runs
    store.finish_job(old.job_id, JobResult(Outcome.CANCELLED, None, "cancelled"), clocks.now)
    scheduler.tick()
    assert task_state(database, task) == "running"
    assert executor.submitted[-1].attempt == 2


def test_a_pass_for_named_tasks_advances_those_and_a_full_pass_catches_up_the_rest(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler = scheduler_for(config)
    create(container)
    create(container, workflow="team-b-deploy")
    scheduler.tick()
    first, second = executor.submitted
    for build in (first, second):
        run(SqlJobStore(database), build, Outcome.PASSED, clocks.now)
    # A wake that names the first task (its job ended): only its deploy is sent.
    scheduler.tick({first.task_pk})
    assert [(j.task_pk, j.stage) for j in executor.submitted[2:]] == [(first.task_pk, "deploy")]
    # The second's end was told to nobody: the next full pass (at least every poll_s) sees it.
    scheduler.tick()
    assert [(j.task_pk, j.stage) for j in executor.submitted[2:]] == [
        (first.task_pk, "deploy"),
        (second.task_pk, "deploy"),
    ]


def wait_until(check: Callable[[], bool], timeout_s: float = 10) -> None:
    """Until the scheduler's own thread has done what `check` looks for."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the scheduler's thread never got there"
        time.sleep(0.01)


def test_a_job_that_ends_advances_its_task_on_the_reporting_thread(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    task = create(container)
    scheduler.tick()
    [build] = executor.submitted
    run(store, build, Outcome.PASSED, clocks.now)
    scheduler.job_ended(build.task_pk)  # no pass of the scheduler's in between
    assert [j.stage for j in executor.submitted] == ["build", "deploy"]
    # The scheduler's pass for the same wake finds the deploy sent: not sent twice.
    scheduler.tick({build.task_pk})
    assert len(executor.submitted) == 2
    run(store, executor.submitted[1], Outcome.PASSED, clocks.now)
    scheduler.job_ended(build.task_pk)
    assert task_state(database, task) == "passed"


def test_a_job_a_worker_ended_advances_its_task_on_the_listeners_thread(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    task = create(container)
    scheduler.tick()
    [build] = executor.submitted
    run(store, build, Outcome.PASSED, clocks.now)
    reads = reads_counted(database, monkeypatch)
    writes = database.writes_begun
    # The listener's call for a notification naming the task: no pass in between.
    scheduler.job_ended_elsewhere(build.task_pk)
    assert [j.stage for j in executor.submitted] == ["build", "deploy"]
    # The task and its jobs read in the transaction that queues the deploy: one
    # transaction, no read before it (the task, then its jobs, each cost one).
    assert (database.writes_begun - writes, reads) == (1, [])
    run(store, executor.submitted[1], Outcome.PASSED, clocks.now)
    writes = database.writes_begun
    scheduler.job_ended_elsewhere(build.task_pk)
    assert (database.writes_begun - writes, reads) == (1, [])
    assert task_state(database, task) == "passed"


def reads_counted(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the name of each of `database`'s read methods as it is called."""
    reads: list[str] = []
    for name in ("read", "read_rows", "read_together"):
        real = getattr(database, name)

        def counted(*args: Any, real: Any = real, name: str = name) -> Any:
            reads.append(name)
            return real(*args)

        monkeypatch.setattr(database, name, counted)
    return reads


def test_a_fault_in_the_step_for_a_job_a_worker_ended_undoes_it_all_for_the_next_pass(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    create(container)
    scheduler.tick()
    [build] = executor.submitted
    run(store, build, Outcome.PASSED, clocks.now)
    real_dispatch = Scheduler._dispatch

    def dispatch_then_fail(self: Scheduler, *args: Any) -> bool:
        if real_dispatch(self, *args):  # the builds' (none left) or the deploy's
            raise RuntimeError("a bug after the deploy was queued, and asked to be sent")
        return False

    monkeypatch.setattr(Scheduler, "_dispatch", dispatch_then_fail)
    scheduler.job_ended_elsewhere(build.task_pk)  # never raises: the listener goes on
    assert job_states(database) == ["passed", "pending"]  # the queueing undone
    assert len(executor.submitted) == 1  # and nothing sent for it
    assert f"task {build.task_pk}: advancing it" in caplog.text
    monkeypatch.setattr(Scheduler, "_dispatch", real_dispatch)
    assert scheduler._woken == {build.task_pk}  # the scheduler's next pass takes it
    scheduler.tick(scheduler._woken)
    assert [j.stage for j in executor.submitted] == ["build", "deploy"]
    assert job_states(database) == ["passed", "queued"]


def test_a_job_ended_elsewhere_naming_no_task_makes_the_next_pass_a_full_one(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    create(container)
    scheduler.tick()  # a full pass: the next is due once the fake clock moves (it does not)
    [build] = executor.submitted
    run(store, build, Outcome.PASSED, clocks.now)
    scheduler._poll_s = 0.05  # its passes in between name no task: they advance nothing
    scheduler.start()
    try:
        scheduler.job_ended_elsewhere(None)  # the listener reconnected: it may have missed some
        wait_until(lambda: len(executor.submitted) == 2)
    finally:
        scheduler.stop()
    assert executor.submitted[1].stage == "deploy"


def test_a_job_ending_while_a_pass_advances_its_task_leaves_it_to_that_pass(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runner's thread writes nothing the pass is about to write (no wasted
    transaction on the one writer), and the pass, which read the task before the job
    ended, reads it again: the deploy is sent once, not never."""
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    create(container)
    scheduler.tick()
    [build] = executor.submitted
    real = SqlJobStore.current_jobs
    read, release = threading.Event(), threading.Event()

    def held_after_reading(self: SqlJobStore, task_pk: int) -> list[JobRow]:
        jobs_now = real(self, task_pk)
        if threading.current_thread().name == "pass" and not read.is_set():
            read.set()
            release.wait(30)
        return jobs_now

    monkeypatch.setattr(SqlJobStore, "current_jobs", held_after_reading)
    full_pass = threading.Thread(target=scheduler.tick, name="pass")
    full_pass.start()
    assert read.wait(30)  # the pass has seen the build running, and holds the task
    run(store, build, Outcome.PASSED, clocks.now)
    writes = database.writes_begun
    scheduler.job_ended(build.task_pk)
    assert (database.writes_begun - writes, len(executor.submitted)) == (0, 1)
    release.set()
    full_pass.join(30)
    assert [j.stage for j in executor.submitted] == ["build", "deploy"]


def test_a_task_that_ends_after_its_job_frees_its_slot_for_the_next_in_line(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    one_slot = config.model_copy(update={"max_parallel_tasks": 1})
    scheduler, store = scheduler_for(one_slot), SqlJobStore(database)
    first, second = create(container), create(container)
    scheduler.tick()
    assert task_state(database, second) == "queued"
    run(store, executor.submitted[0], Outcome.FAILED, clocks.now)
    # A poll an hour long: only the wake that the task's end sends starts the second.
    scheduler._poll_s = 3600
    scheduler.start()
    try:
        scheduler.job_ended(executor.submitted[0].task_pk)
        assert task_state(database, first) == "failed"
        wait_until(lambda: task_state(database, second) == "running")
    finally:
        scheduler.stop()


def test_a_fault_while_advancing_after_a_job_leaves_the_task_to_the_scheduler(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    scheduler._poll_s = 3600  # after this first full pass, only wakes start one
    create(container)
    scheduler.tick()
    [build] = executor.submitted
    run(store, build, Outcome.PASSED, clocks.now)
    real = SqlJobStore.current_jobs
    monkeypatch.setattr(SqlJobStore, "current_jobs", lambda *_: (_ for _ in ()).throw(OSError))
    scheduler.job_ended(build.task_pk)  # does not raise into the runner
    assert len(executor.submitted) == 1
    monkeypatch.setattr(SqlJobStore, "current_jobs", real)
    scheduler.start()
    try:
        wait_until(lambda: len(executor.submitted) == 2)
    finally:
        scheduler.stop()
    assert executor.submitted[1].stage == "deploy"


def test_a_fault_while_queueing_a_stage_leaves_the_rest_of_it_for_the_next_pass(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    both = (
        TargetRequest(
            "redis3", (RepoRequest("voting-app", "master"), RepoRequest("dyliu", "main"))
        ),
        TargetRequest("web", (RepoRequest("dyliu", "main"),)),
    )
    container.tasks.create(ADMIN, CreateRequest(workflow_name=WF, env_name="dev", targets=both))
    scheduler.tick()
    for build in list(executor.submitted):
        run(store, build, Outcome.PASSED, clocks.now)
    real = SqlJobStore.move_job
    moves: list[int] = []

    def full_disk_on_the_second(self: SqlJobStore, job: JobRow, *args: Any) -> bool:
        moves.append(job.id)
        if len(moves) == 2:
            raise OSError("database or disk is full")
        return real(self, job, *args)

    monkeypatch.setattr(SqlJobStore, "move_job", full_disk_on_the_second)
    scheduler.tick()  # the first deploy is queued and sent; the second's queueing fails
    monkeypatch.setattr(SqlJobStore, "move_job", real)
    scheduler.tick()  # the second is still pending: this pass sends it
    deploys = [j for j in executor.submitted if j.stage == "deploy"]
    assert sorted(j.service for j in deploys) == ["redis3", "web"]
    assert job_states(database).count("queued") == 2  # both sent, none left behind


def test_a_task_read_before_a_restart_is_not_advanced_into_the_new_attempt(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    task = create(container)
    scheduler.tick()
    [stale] = store.tasks_in(TaskState.RUNNING)  # as a runner's thread read it
    run(store, executor.submitted[0], Outcome.FAILED, clocks.now)
    scheduler.tick()  # another thread ends it; a client restarts it at once
    container.tasks.restart(ADMIN, WF, task)
    # The runner's thread goes on with what it read: it must not send attempt 2's build
    # (the task is queued, not started) nor end the task.
    scheduler._advance(stale, clocks.now)
    assert len(executor.submitted) == 1
    assert task_state(database, task) == "queued"
    scheduler.tick()  # the scheduler starts attempt 2 as usual
    assert [j.attempt for j in executor.submitted] == [1, 2]


def test_a_job_that_ends_while_the_server_stops_is_left_for_the_next_server(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler = scheduler_for(config)
    task = create(container)
    scheduler.tick()
    run(SqlJobStore(database), executor.submitted[0], Outcome.PASSED, clocks.now)
    scheduler.stop()
    scheduler.job_ended(executor.submitted[0].task_pk)
    assert len(executor.submitted) == 1  # no deploy sent into a pool that is shutting down
    assert task_state(database, task) == "running"


class SpecCountingStore(SqlJobStore):
    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.spec_reads: list[int] = []

    def task_spec(self, task_pk: int) -> TaskSpec:
        self.spec_reads.append(task_pk)
        return super().task_spec(task_pk)


def test_a_tasks_spec_is_read_once_for_its_builds_and_its_deploys(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
) -> None:
    store = SpecCountingStore(database)
    scheduler = Scheduler(
        config, store, executor, lambda: clocks.now, monotonic=lambda: clocks.mono
    )
    first, second = create(container), create(container)
    ran = 0
    for _ in range(10):  # the workflow runs one task at a time: each stage a pass
        scheduler.tick()
        for job in executor.submitted[ran:]:
            run(store, job, Outcome.PASSED, clocks.now)
        ran = len(executor.submitted)
    assert (task_state(database, first), task_state(database, second)) == ("passed", "passed")
    deploys = [j for j in executor.submitted if j.stage == "deploy"]
    assert [j.task_id for j in deploys] == [first, second]
    assert len(store.spec_reads) == len(set(store.spec_reads)) == 2


def end_in_transaction(
    store: SqlJobStore, scheduler: Scheduler, job: JobSpec, outcome: Outcome, now: int
) -> None:
    """What a local runner reports: its claim, then its result with the task's next step
    taken in the result's transaction."""
    assert store.claim_job(job.job_id, "host:1:1", now)
    store.finish_job(
        job.job_id,
        JobResult(outcome, 0, outcome.value),
        now,
        then=lambda tx: scheduler.job_ended_in(tx, job.task_pk),
    )


def test_a_jobs_result_and_its_tasks_next_step_are_one_transaction(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    task = create(container)
    scheduler.tick()
    [build] = executor.submitted
    sent_before_commit: list[int] = []

    def then(tx: Any) -> None:
        scheduler.job_ended_in(tx, build.task_pk)
        sent_before_commit.append(len(executor.submitted))

    assert store.claim_job(build.job_id, "host:1:1", clocks.now)
    writes = database.writes_begun
    store.finish_job(build.job_id, JobResult(Outcome.PASSED, 0, "ok"), clocks.now, then=then)
    assert database.writes_begun - writes == 1
    # The deploy is handed to the executor only once it is queued for good.
    assert sent_before_commit == [1]
    assert [j.stage for j in executor.submitted] == ["build", "deploy"]
    assert job_states(database) == ["passed", "queued"]
    deploy = executor.submitted[1]
    assert store.claim_job(deploy.job_id, "host:1:1", clocks.now)
    writes = database.writes_begun
    store.finish_job(
        deploy.job_id,
        JobResult(Outcome.PASSED, 0, "ok"),
        clocks.now,
        then=lambda tx: scheduler.job_ended_in(tx, deploy.task_pk),
    )
    assert database.writes_begun - writes == 1
    assert task_state(database, task) == "passed"


def test_a_fault_in_the_next_step_is_undone_alone_and_the_result_kept(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    task = create(container)
    scheduler.tick()
    real_dispatch, real_finish = Scheduler._dispatch, Scheduler._finish

    def dispatch_then_fail(self: Scheduler, *args: Any) -> bool:
        if real_dispatch(self, *args):  # the builds' (none left) or the deploy's
            raise RuntimeError("a bug after the deploy was queued, and asked to be sent")
        return False

    monkeypatch.setattr(Scheduler, "_dispatch", dispatch_then_fail)
    end_in_transaction(store, scheduler, executor.submitted[0], Outcome.PASSED, clocks.now)
    assert job_states(database) == ["passed", "pending"]  # the build's result stays
    assert len(executor.submitted) == 1  # no deploy sent for a queueing undone
    monkeypatch.setattr(Scheduler, "_dispatch", real_dispatch)
    scheduler.tick()
    [_, deploy] = executor.submitted

    def finish_then_fail(self: Scheduler, *args: Any) -> bool:
        real_finish(self, *args)  # the task's end is written, then the step fails
        raise RuntimeError("a bug after the task's end")

    monkeypatch.setattr(Scheduler, "_finish", finish_then_fail)
    caplog.set_level("INFO", logger="conveyor")
    end_in_transaction(store, scheduler, deploy, Outcome.PASSED, clocks.now)
    assert job_states(database) == ["passed", "passed"]
    assert task_state(database, task) == "running"  # the task's end went with the step
    said = [r.getMessage() for r in caplog.records]
    assert [m for m in said if m.startswith("task ") and "-> passed" in m] == []  # nor logged
    monkeypatch.setattr(Scheduler, "_finish", real_finish)
    scheduler.tick()
    assert task_state(database, task) == "passed"


def test_a_step_the_database_cannot_undo_alone_fails_the_whole_result_for_its_retry(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQLite rolls a whole transaction back on some errors (a full disk): the savepoint
    is gone with it, and a COMMIT then would store nothing yet seem to succeed."""
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    create(container)
    scheduler.tick()
    [build] = executor.submitted
    real = Scheduler._advance

    def whole_transaction_lost(self: Scheduler, task: Any, now: int, tx: Any = None) -> bool:
        cursor = tx._conn.connection.dbapi_connection.cursor()
        cursor.execute("ROLLBACK")  # what the database does on such an error
        raise OSError("database or disk is full")

    monkeypatch.setattr(Scheduler, "_advance", whole_transaction_lost)
    with pytest.raises(Exception, match=r"(?i)savepoint"):
        end_in_transaction(store, scheduler, build, Outcome.PASSED, clocks.now)
    assert job_states(database) == ["running", "pending"]  # not recorded, and not lost
    assert len(executor.submitted) == 1
    monkeypatch.setattr(Scheduler, "_advance", real)
    store.finish_job(  # the runner's retry
        build.job_id,
        JobResult(Outcome.PASSED, 0, "ok"),
        clocks.now,
        then=lambda tx: scheduler.job_ended_in(tx, build.task_pk),
    )
    assert [j.stage for j in executor.submitted] == ["build", "deploy"]


def test_a_result_whose_commit_answer_was_lost_gets_what_it_queued_sent_on_its_retry(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    create(container)
    scheduler.tick()
    [build] = executor.submitted
    reporter = StoreJobReporter(
        store,
        build.job_id,
        "host:1:1",
        lambda: clocks.now,
        lambda: scheduler.job_ended_again(build.task_pk),
        then=lambda tx: scheduler.job_ended_in(tx, build.task_pk),
    )
    assert reporter.claim()
    real = sa.engine.Connection._commit_impl

    def committed_then_cut_off(self: sa.engine.Connection) -> None:
        real(self)
        monkeypatch.setattr(sa.engine.Connection, "_commit_impl", real)
        raise sa.exc.OperationalError("COMMIT", None, Exception("server closed the connection"))

    monkeypatch.setattr(sa.engine.Connection, "_commit_impl", committed_then_cut_off)
    result = JobResult(Outcome.PASSED, 0, "ok")
    with pytest.raises(sa.exc.OperationalError):
        reporter.finished(result)
    # Stored, but the runner was not told, and what the step queued was not sent.
    assert job_states(database) == ["passed", "queued"]
    assert len(executor.submitted) == 1
    reporter.finished(result)  # the runner's retry finds its result recorded
    assert [j.stage for j in executor.submitted] == ["build", "deploy"]


def test_a_result_for_a_task_restarted_meanwhile_lets_its_next_attempt_start(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    task = create(container)
    scheduler.tick()
    [build] = executor.submitted
    assert store.claim_job(build.job_id, "host:1:1", clocks.now)
    container.tasks.cancel(ADMIN, WF, task)  # cancelling: the runner still stops it
    container.tasks.restart(ADMIN, WF, task)  # queued, waiting for the build to stop
    scheduler._poll_s = 3600  # after its first pass, only a wake starts another
    scheduler.start()
    try:
        store.finish_job(
            build.job_id,
            JobResult(Outcome.CANCELLED, None, "cancelled"),
            clocks.now,
            then=lambda tx: scheduler.job_ended_in(tx, build.task_pk),
        )
        wait_until(lambda: len(executor.submitted) == 2)
    finally:
        scheduler.stop()
    assert [j.attempt for j in executor.submitted] == [1, 2]


def test_a_result_whose_transaction_fails_sends_nothing_and_its_retry_advances_the_task(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    create(container)
    scheduler.tick()
    [build] = executor.submitted
    assert store.claim_job(build.job_id, "host:1:1", clocks.now)

    def then_the_disk_fails(tx: Any) -> None:
        scheduler.job_ended_in(tx, build.task_pk)
        raise OSError("disk I/O error")

    result = JobResult(Outcome.PASSED, 0, "ok")
    with pytest.raises(OSError):
        store.finish_job(build.job_id, result, clocks.now, then=then_the_disk_fails)
    assert job_states(database) == ["running", "pending"]
    assert len(executor.submitted) == 1  # no deploy sent for a result not recorded
    # The runner tries again: the task is not left marked as advanced by someone else.
    store.finish_job(
        build.job_id, result, clocks.now, then=lambda tx: scheduler.job_ended_in(tx, build.task_pk)
    )
    assert [j.stage for j in executor.submitted] == ["build", "deploy"]


def test_two_builds_ending_at_once_get_their_tasks_deploys_sent(
    container: Container,
    config: Config,
    database: Database,
    executor: RecordingExecutor,
    clocks: Clocks,
    scheduler_for: SchedulerFor,
) -> None:
    """Each result's transaction sees the other build still running. The first takes
    the task, and keeps it until it has committed; the second leaves the task to it, and
    asks again once committed itself: the deploys go, with no pass of the scheduler's."""
    if database.is_sqlite:
        pytest.skip("SQLite has one writer: two results' transactions cannot be open at once")
    scheduler, store = scheduler_for(config), SqlJobStore(database)
    request = CreateRequest(
        workflow_name=WF,
        env_name="dev",
        targets=(TargetRequest("redis3", ()), TargetRequest("web", ())),
    )
    container.tasks.create(ADMIN, request)
    scheduler.tick()
    builds = list(executor.submitted)
    assert [b.stage for b in builds] == ["build", "build"]
    both_open = threading.Barrier(2, timeout=30)

    def end(build: JobSpec) -> None:
        assert store.claim_job(build.job_id, "host:1:1", clocks.now)

        def then(tx: Any) -> None:
            scheduler.job_ended_in(tx, build.task_pk)
            both_open.wait()  # neither has committed: each saw the other running

        store.finish_job(build.job_id, JobResult(Outcome.PASSED, 0, "ok"), clocks.now, then=then)

    threads = [threading.Thread(target=end, args=(b,)) for b in builds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(j.stage for j in executor.submitted) == ["build", "build", "deploy", "deploy"]
