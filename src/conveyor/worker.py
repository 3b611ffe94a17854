"""`conveyor worker`: a Celery worker that runs jobs with the one job runner.

Each worker thread is a runner that owns its job's process tree. The worker reports to
the shared database (claim, heartbeats, result, log chunks); the server only reads.
"""

import contextlib
import logging
import signal
import socket
import threading
from dataclasses import replace
from typing import Any

from celery import platforms
from celery.exceptions import Reject, WorkerTerminate
from celery.platforms import EX_FAILURE
from celery.signals import worker_ready
from celery.worker import state as celery_state
from kombu.asynchronous import Hub, get_event_loop
from prometheus_client import start_http_server

from conveyor.domain.jobs import JobSpec
from conveyor.executors.celery import TASK_NAME, celery_app
from conveyor.executors.paths import RunnerPaths
from conveyor.executors.runner import TRASH, run_job
from conveyor.executors.stopping import StoppingReporter
from conveyor.metrics import Metrics
from conveyor.settings import Config
from conveyor.storage.db import Database
from conveyor.storage.job_store import SqlJobStore, StoreJobReporter
from conveyor.storage.log_store import DbLogSink
from conveyor.wiring import isolation_for, runner_identity, start_runner_host, unix_now

log = logging.getLogger("conveyor.worker")
_WAKERS: list[tuple[socket.socket, socket.socket]] = []  # open for the process's life
_STOP_SIGNALS = ("SIGTERM", "SIGQUIT", "SIGINT")


def run_worker(
    config: Config,
    queues: list[str],
    concurrency: int,
    metrics_address: tuple[str, int] | None = None,
) -> None:
    if not config.broker_url:
        raise SystemExit("broker_url: required to run a worker")
    metrics = Metrics()
    if metrics_address is not None:
        host, port = metrics_address
        start_http_server(port, addr=host, registry=metrics.registry)
        log.info("metrics at http://%s:%s/metrics", host, port)
    db = Database.from_url(config.database_url)
    store = SqlJobStore(db)
    runner = runner_identity(db)
    isolation = isolation_for(config)
    paths = RunnerPaths(config.data_dir)
    sweeper = start_runner_host(config, store, runner, "worker lost: its worker process died")
    app = celery_app(config.broker_url, config.queue)
    stopping = threading.Event()
    asked = threading.Event()  # a signal told the worker to stop
    worker_ready.connect(lambda **_: _stop_jobs_on_signals(stopping, asked), weak=False)

    @app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
    def run(message: dict[str, Any]) -> None:
        env = config.envs.get(message["env_name"])
        secrets = env.resolved_secrets() if env else {}
        spec = JobSpec.from_json(message, secrets, tuple(config.secret_values()))
        # How a job is confined is this machine's decision, from its own config.
        spec = replace(
            spec, sandbox=config.sandbox_of(spec.service), network=config.network_of(spec.service)
        )
        # The log's end goes with the result, in its transaction: one fewer a job.
        sink = DbLogSink(db, spec.job_id, end_with_result=True)
        reporter = StoppingReporter(
            metrics.measured(
                StoreJobReporter(
                    store, spec.job_id, runner.id, unix_now, lambda: None, sink.store_pending
                ),
                spec.stage,
            ),
            stopping,
            "worker shut down while it ran",
        )
        try:
            result = run_job(spec, paths, reporter, lambda: sink, runner, isolation)
        except Exception as exc:
            # The claim could not be recorded: the job is not ours yet, and must not be
            # acknowledged as if it ran. Back to the broker, for this or another worker.
            log.warning("job %s: could not claim it (%s); returned to the queue", spec.job_id, exc)
            raise Reject(reason=str(exc), requeue=True) from exc
        if result is None:
            log.info("job %s: not ours to run (delivered twice, or cancelled)", spec.job_id)

    argv = [
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--queues={','.join(queues or [config.queue])}",
        f"--hostname=conveyor-{runner.host}:{runner.pid}@{runner.host}",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=INFO",
    ]
    code: object = 0
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        code = exc.code
    finally:
        sweeper.stop()
        TRASH.drain()  # a clean stop leaves no workspace behind
        db.dispose()
        app.close()
    if not asked.is_set() and code in (0, None):
        # Celery ends with 0 after an "Unrecoverable error" (kombu losing its broker
        # connection mid-acknowledgement): a supervisor that restarts on failure must
        # see one.
        log.error(
            "the worker stopped without being asked to (its broker connection, most "
            "likely): exiting 1, for a supervisor to start it again"
        )
        code = 1
    raise SystemExit(code)


def _stop_jobs_on_signals(stopping: threading.Event, asked: threading.Event) -> None:
    """Celery stops taking jobs at the first SIGTERM or Ctrl-C and waits for those
    running (its warm shutdown, left as it is: a build may finish). A second of either,
    or SIGQUIT, stops them now: each runner stops its job's processes within the grace and
    records the job failed, so the worker can exit. Wraps Celery's own handlers, which
    are in place once the worker is ready (this runs in the main thread then), and
    those Celery installs as a shutdown goes on (after a first Ctrl-C, its cold
    shutdown's), which would otherwise replace these."""
    asks = 0

    def before(name: str) -> bool:
        """Whether Celery's handler should run too."""
        nonlocal asks
        asks += 1
        asked.set()
        if name != "SIGQUIT" and asks < 2:
            return True  # Celery's warm shutdown
        if stopping.is_set():
            # Told twice to stop now: Celery's hard way out, for a shutdown stuck on a
            # silent broker. The runners were told already; the exit still waits for
            # them to stop their jobs.
            log.warning("%s (stop signal %d): exiting now", name, asks)
            raise WorkerTerminate(EX_FAILURE)
        log.warning("%s (stop signal %d): stopping the running jobs now", name, asks)
        stopping.set()
        # A warm shutdown ends once the runners have stopped their jobs: one under way
        # goes on, or this one starts it. Celery's cold shutdown would try to kill its
        # thread pool's jobs, which it cannot (NotImplementedError, logged as an
        # "Unrecoverable error"), and end the wait before they are stopped.
        celery_state.should_stop = EX_FAILURE
        return False

    def wrap(name: str) -> None:
        celerys = platforms.signals[name]
        if getattr(celerys, "conveyor_wrapped", False):
            return

        def handler(signum: int, frame: Any) -> None:
            try:
                if before(name) and callable(celerys):
                    celerys(signum, frame)
            finally:
                for each in _STOP_SIGNALS:  # what Celery installed meanwhile
                    wrap(each)

        handler.conveyor_wrapped = True  # type: ignore[attr-defined]
        platforms.signals[name] = handler

    for name in _STOP_SIGNALS:
        wrap(name)
    hub = get_event_loop()
    if hub is not None:
        _WAKERS.append(wake_on_signals(hub))


def wake_on_signals(hub: Hub) -> tuple[socket.socket, socket.socket]:
    """Make a signal wake Celery's loop `hub` (from its main thread); returns the
    sockets, which must stay open.

    The loop acts on a signal only once its poll returns: at its next timer, up to 10 s
    later (an idle worker on RabbitMQ took 1.6 s to stop, 0.6 s with this). Python
    writes to this socket when a signal arrives, and the loop polls it. A loop reset
    after a lost broker connection drops its readers: each pass puts this one back."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    fd = reader.fileno()

    def drain() -> None:
        with contextlib.suppress(OSError):
            reader.recv(4096)

    def polled() -> None:
        if fd not in hub.readers:
            hub.add_reader(fd, drain)  # type: ignore[no-untyped-call]

    polled()
    hub.on_tick.add(polled)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    return reader, writer
