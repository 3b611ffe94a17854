"""The composition root: builds the stores, services and executor for one config."""

import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from conveyor.domain.jobs import JobSpec
from conveyor.domain.notifications import Endpoint, NotifyPolicy
from conveyor.executors.celery import CeleryExecutor
from conveyor.executors.local import LocalExecutor
from conveyor.executors.paths import RunnerPaths
from conveyor.executors.processes import RunnerIdentity, runner_alive, start_time, stop_orphans
from conveyor.executors.reporting import JobReporter
from conveyor.executors.sandbox import (
    Isolation,
    JobUser,
    reach_problem,
    sandbox_problem,
    user_problem,
)
from conveyor.metrics import Metrics
from conveyor.outbound.http_poster import HttpPoster
from conveyor.scm.git import GitCli
from conveyor.services.auth import Authorizer, TokenService
from conveyor.services.commit_lookup import CommitLookup
from conveyor.services.delivery import NotificationSender
from conveyor.services.hooks import HookService
from conveyor.services.notifications import NotificationService
from conveyor.services.ports import Clock, Executor, LogStore, RefResolver
from conveyor.services.reconciler import OrphanSweeper, reconcile_dead_runners
from conveyor.services.scheduler import Scheduler
from conveyor.services.status_reads import StatusReads
from conveyor.services.task_ends import AllTaskEvents, TaskEnds
from conveyor.services.tasks import TaskService
from conveyor.settings import Config
from conveyor.storage import migrate
from conveyor.storage.async_reads import AsyncReads, SqlAsyncLookups
from conveyor.storage.db import Database
from conveyor.storage.installation import installation_id
from conveyor.storage.job_store import SqlJobStore, StoreJobReporter
from conveyor.storage.log_store import DbLogStore, FileLogSink, FileLogStore
from conveyor.storage.notify import JobListener
from conveyor.storage.outbox import Outbox, SqlOutboxStore
from conveyor.storage.task_store import SqlTaskStore
from conveyor.storage.token_store import SqlTokenStore

CELERY_POLL_S = 0.25
ORPHAN_SWEEP_S = 5.0


def unix_now() -> int:
    return int(time.time())


@dataclass
class Container:
    config: Config
    db: Database
    tasks: TaskService
    tokens: TokenService
    jobs: SqlJobStore
    scheduler: Scheduler | None = None
    executor: Executor | None = None
    listener: JobListener | None = None
    runner: Callable[[], RunnerIdentity] | None = None
    broker_check: Callable[[], str | None] | None = None
    sweeper: OrphanSweeper | None = None
    hooks: HookService | None = None
    notifications: NotificationService | None = None
    sender: NotificationSender | None = None
    metrics: Metrics = field(default_factory=Metrics)
    task_ends: TaskEnds = field(default_factory=TaskEnds)
    # PostgreSQL: the lookup by commit's reads on the event loop (ADR 0004).
    async_reads: AsyncReads | None = None
    commit_lookup: CommitLookup | None = None
    status_reads: StatusReads | None = None

    def start(self) -> None:
        """Reconcile what a previous server left running, then start scheduling and
        sending notifications (those a previous server left undelivered first)."""
        if self.sender is not None:
            self.sender.start()
        if self.scheduler is None:
            return
        if self.config.executor == "celery":
            # Jobs run on workers: a worker ends the jobs of dead peers on its host, the
            # reaper those of workers that never come back. Queued jobs are sent again:
            # the broker may have lost them; a second delivery runs nothing twice.
            if self.listener is not None:
                self.listener.start()
            self.scheduler.start(resubmit_queued=True)
            return
        assert self.runner is not None
        self.sweeper = start_runner_host(
            self.config, self.jobs, self.runner(), "server restarted while the job ran"
        )
        self.scheduler.start(resubmit_queued=True)

    def readiness(self) -> dict[str, str]:
        """Each thing this server needs to serve, `ok` or why not (for /readyz)."""
        checks = {"database": "ok", "migrations": "ok"}
        try:
            current = migrate.current_revision(self.db)
        except Exception as exc:
            checks["database"] = f"cannot be reached: {exc.__class__.__name__}: {exc}"
            checks["migrations"] = "unknown: the database cannot be reached"
        else:
            head = migrate.heads()[0]
            if current != head:
                checks["migrations"] = f"at {current}, not at {head}: run conveyor serve to migrate"
        if self.broker_check is not None:
            checks["broker"] = self.broker_check() or "ok"
        return checks

    def migrate(self) -> None:
        """Bring the database to the newest schema (as every server and worker start)."""
        migrate.upgrade(self.db)

    def stop(self) -> None:
        if self.sender is not None:
            self.sender.stop()
        if self.sweeper is not None:
            self.sweeper.stop()
        if self.listener is not None:
            self.listener.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.executor is not None:
            self.executor.shutdown(wait=True)


def build_container(
    config: Config,
    *,
    db: Database | None = None,
    resolver: RefResolver | None = None,
    clock: Clock = unix_now,
    run_jobs: bool = False,
) -> Container:
    """Services for `config`; with `run_jobs`, also the scheduler and the executor."""
    db = db or Database.from_url(config.database_url)
    metrics = Metrics()
    metrics.watch_database(db, config, clock)
    task_ends = TaskEnds()
    metrics.watch_waits(task_ends.waiting)
    events = AllTaskEvents([metrics, task_ends])
    authorizer = Authorizer(config.roles, list(config.workflows))
    policy = notify_policy(config)
    outbox = Outbox(policy)
    jobs = SqlJobStore(db, outbox)
    scheduler: Scheduler | None = None
    executor: Executor | None = None
    listener: JobListener | None = None
    runner: Callable[[], RunnerIdentity] | None = None
    paths = RunnerPaths(config.data_dir)
    logs: LogStore = FileLogStore(paths.log)
    if config.executor == "celery":
        logs = DbLogStore(db)
        if run_jobs:
            assert config.broker_url is not None  # the config check requires it
            executor = CeleryExecutor(config.broker_url, config.queue)
            # Workers cannot wake this process directly: PostgreSQL tells it when a job
            # ends, and the listener's thread advances its task at once, as a local
            # runner's does; on SQLite (one machine) the poll is how it sees that.
            scheduler = Scheduler(
                config, jobs, executor, clock, poll_s=CELERY_POLL_S, events=events
            )
            if not db.is_sqlite:
                url = db.engine.url.render_as_string(hide_password=False)
                listener = JobListener(url, scheduler.job_ended_elsewhere)
    elif run_jobs:
        # A runner like a worker, so a later server finds what this one leaves. The
        # installation id is read once the database is migrated, when jobs first run.
        runner = functools.cache(lambda: runner_identity(db))
        wake: list[Scheduler] = []

        def reporter_for(job: JobSpec) -> JobReporter:
            # The job's result and its task's next step in one transaction.
            reporter = StoreJobReporter(
                jobs,
                job.job_id,
                runner().id,
                clock,
                lambda: wake[0].job_ended_again(job.task_pk),
                then=lambda tx: wake[0].job_ended_in(tx, job.task_pk),
            )
            return metrics.measured(reporter, job.stage)

        executor = LocalExecutor(
            paths,
            config.max_parallel_jobs,
            reporter_for,
            lambda job: FileLogSink(paths.log(job.job_id)),
            runner,
            isolation_for(config),
        )
        scheduler = Scheduler(config, jobs, executor, clock, events=events)
        wake.append(scheduler)
    sender = None
    if run_jobs and policy is not None:
        sender = NotificationSender(SqlOutboxStore(db), http_poster(config), time.time)

    def on_change(task_pk: int | None) -> None:
        if scheduler is not None:
            scheduler.wake(task_pk)
        if sender is not None:
            sender.wake()

    task_store = SqlTaskStore(db, outbox)
    tasks = TaskService(
        config,
        task_store,
        resolver or GitCli(),
        authorizer,
        clock,
        on_change=on_change,
        logs=logs,
        events=events,
    )
    token_store = SqlTokenStore(db)
    tokens = TokenService(token_store, config.roles, clock)
    async_reads = None if db.is_sqlite else AsyncReads(db)
    on_loop = None if async_reads is None else SqlAsyncLookups(async_reads, token_store, task_store)
    return Container(
        config=config,
        db=db,
        tasks=tasks,
        tokens=tokens,
        async_reads=async_reads,
        commit_lookup=None if on_loop is None else CommitLookup(tokens, tasks, on_loop, clock),
        status_reads=None if on_loop is None else StatusReads(tokens, tasks, on_loop),
        jobs=jobs,
        scheduler=scheduler,
        executor=executor,
        listener=listener,
        runner=runner,
        broker_check=executor.broker_problem if isinstance(executor, CeleryExecutor) else None,
        hooks=HookService(config, tasks),
        notifications=NotificationService(
            SqlOutboxStore(db), authorizer, clock, sender.wake if sender else lambda: None
        ),
        sender=sender,
        metrics=metrics,
        task_ends=task_ends,
    )


def notify_policy(config: Config) -> NotifyPolicy | None:
    """Who hears of task changes, from the config; None if nobody does."""
    gitlab = config.gitlab
    api = f"{gitlab.url}/api/v4" if gitlab is not None and gitlab.token else None
    projects = {
        name: repo.gitlab_project
        for name, repo in config.repos.items()
        if repo.gitlab_project is not None
    }
    endpoints = tuple(
        Endpoint(n.url, frozenset(n.events), tuple(n.workflows)) for n in config.notifications
    )
    if not (api and projects) and not endpoints:
        return None
    return NotifyPolicy(config.public_url, api, projects, endpoints)


def http_poster(config: Config) -> HttpPoster:
    gitlab = config.gitlab
    api = f"{gitlab.url}/api/v4" if gitlab is not None else None
    token = gitlab.resolved_token() if gitlab is not None else None
    return HttpPoster(api, token, {n.url: n.resolved_secret() for n in config.notifications})


def isolation_for(config: Config) -> Isolation:
    """Who jobs run as, and the directories a sandboxed job must not see: the config's
    and the SQLite database's (the data directory is always hidden)."""
    hidden: list[Path] = []
    if config.source is not None:
        hidden.append(config.source.parent)
    url = sa.make_url(config.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        hidden.append(Path(str(url.database)).resolve().parent)
    user = JobUser.named(config.run_as) if config.run_as else None
    return Isolation(user, tuple(dict.fromkeys(hidden)))


def runner_problems(config: Config) -> list[str]:
    """Why this machine cannot run the config's jobs as the config asks, tried here: a
    sandbox asked for but unavailable is an error at start, never a silent fallback."""
    problems = []
    if config.run_as:
        why = user_problem(config.run_as) or reach_problem(isolation_for(config), config.data_dir)
        if why:
            return [f"run_as: {why}"]
    sandboxed = sorted(s for s in config.services if config.sandbox_of(s) == "bubblewrap")
    if sandboxed:
        why = sandbox_problem(isolation_for(config))
        if why:
            asked = "sandbox" if config.sandbox == "bubblewrap" else f"services.{sandboxed[0]}"
            problems.append(f"{asked}: bubblewrap is asked for, but {why}")
    return problems


def runner_warnings(config: Config) -> list[str]:
    """What works as configured but is weaker than it looks."""
    if os.geteuid() == 0 and not config.run_as:
        return [
            "jobs run as root: even in the sandbox, with no capabilities, they can read "
            "every root-owned file of the host; set run_as to an unprivileged user"
        ]
    return []


def start_runner_host(
    config: Config, jobs: SqlJobStore, runner: RunnerIdentity, why: str
) -> OrphanSweeper:
    """What a process that runs jobs (a server with the local executor, a worker) does
    first and then keeps doing: stop what dead runners of this installation left on
    this host and fail their jobs with `why`; once now, then every ORPHAN_SWEEP_S."""

    def sweep() -> int:
        return reconcile_dead_runners(
            jobs,
            runner.host,
            runner_alive,
            lambda: stop_orphans(runner, config.cancel_grace),
            why,
            unix_now,
        )

    failed = sweep()
    if failed:
        logging.getLogger("conveyor").warning("failed %d jobs of dead runners here", failed)
    sweeper = OrphanSweeper(sweep, ORPHAN_SWEEP_S)
    sweeper.start()
    return sweeper


def runner_identity(db: Database) -> RunnerIdentity:
    """This process as a runner of the installation `db` belongs to."""
    pid = os.getpid()
    return RunnerIdentity(installation_id(db), socket.gethostname(), pid, start_time(pid))


def migrate_database(config: Config) -> None:
    """The database of `config` at the newest schema, for a process that has no
    container (a worker)."""
    db = Database.from_url(config.database_url)
    try:
        migrate.upgrade(db)
    finally:
        db.dispose()
