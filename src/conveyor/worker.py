"""`conveyor worker`: a Celery worker that runs jobs with the one job runner.

Each worker thread is a runner that owns its job's process tree. The worker reports to
the shared database (claim, heartbeats, result, log chunks); the server only reads.
"""

import logging
from dataclasses import replace
from typing import Any

from celery.exceptions import Reject

from conveyor.domain.jobs import JobSpec
from conveyor.executors.base import RunnerPaths
from conveyor.executors.celery import TASK_NAME, celery_app
from conveyor.executors.processes import runner_alive, stop_orphans
from conveyor.executors.runner import run_job
from conveyor.services.reconciler import reconcile_dead_runners
from conveyor.settings import Config
from conveyor.storage.db import Database
from conveyor.storage.job_store import SqlJobStore, StoreJobReporter
from conveyor.storage.log_store import DbLogSink
from conveyor.wiring import isolation_for, runner_identity, unix_now

log = logging.getLogger("conveyor.worker")


def run_worker(config: Config, queues: list[str], concurrency: int) -> None:
    if not config.broker_url:
        raise SystemExit("broker_url: required to run a worker")
    db = Database.from_url(config.database_url)
    store = SqlJobStore(db)
    runner = runner_identity(db)
    isolation = isolation_for(config)
    paths = RunnerPaths(config.data_dir)
    stopped = reconcile_dead_runners(
        store,
        runner.host,
        runner_alive,
        lambda: stop_orphans(runner, config.cancel_grace),
        "worker lost: its worker process died",
        unix_now,
    )
    if stopped:
        log.warning("failed %d jobs of workers on this host that died", stopped)
    app = celery_app(config.broker_url, config.queue)

    @app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
    def run(message: dict[str, Any]) -> None:
        env = config.envs.get(message["env_name"])
        secrets = env.resolved_secrets() if env else {}
        spec = JobSpec.from_json(message, secrets, tuple(config.secret_values()))
        # How a job is confined is this machine's decision, from its own config.
        spec = replace(
            spec, sandbox=config.sandbox_of(spec.service), network=config.network_of(spec.service)
        )
        reporter = StoreJobReporter(store, spec.job_id, runner.id, unix_now, lambda: None)
        try:
            result = run_job(
                spec, paths, reporter, lambda: DbLogSink(db, spec.job_id), runner, isolation
            )
        except Exception as exc:
            # The claim could not be recorded: the job is not ours yet, and must not be
            # acknowledged as if it ran. Back to the broker, for this or another worker.
            log.warning("job %s: could not claim it (%s); returned to the queue", spec.job_id, exc)
            raise Reject(reason=str(exc), requeue=True) from exc
        if result is None:
            log.info("job %s: not ours to run (delivered twice, or cancelled)", spec.job_id)

    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            f"--queues={','.join(queues or [config.queue])}",
            f"--hostname=conveyor-{runner.host}:{runner.pid}@{runner.host}",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
        ]
    )
