"""The celery executor: jobs travel as messages to workers on other machines.

The database, not Celery, is the truth: a worker claims the job row before it runs
anything (a message delivered twice runs once), reports to the same rows as the local
runner, and writes the log to the database. Settings fit long, non-idempotent jobs:
acknowledged only after the job, one message reserved per worker thread, no results.
"""

from urllib.parse import urlsplit

from celery import Celery

from conveyor.domain.jobs import JobSpec
from conveyor.executors import redis_broker

TASK_NAME = "conveyor.run_job"
BROKER_CHECK_S = 2.0


def celery_app(broker_url: str, default_queue: str) -> Celery:
    app = Celery("conveyor", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        # A worker that dies mid-job leaves its message to be delivered again; the
        # database claim makes that second delivery a no-op.
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=default_queue,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Redis: a message not acknowledged within this long is handed out again; jobs
        # may run for hours, and a duplicate is harmless, but not needed sooner.
        broker_transport_options={"visibility_timeout": 12 * 3600},
    )
    if urlsplit(broker_url).scheme == redis_broker.SCHEME:
        app.conf.broker_transport = redis_broker.Transport
    return app


def broker_error(app: Celery, timeout_s: float = BROKER_CHECK_S) -> Exception | None:
    """What keeps `app`'s broker from answering now (one try), or None."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout_s)
    except Exception as exc:
        return exc
    return None


class CeleryExecutor:
    def __init__(self, broker_url: str, default_queue: str) -> None:
        self._app = celery_app(broker_url, default_queue)

    def submit(self, job: JobSpec) -> None:
        # What Celery shows of the arguments (in the message's headers, and to `celery
        # inspect` or Flower) names the job rather than repeating its spec, which the
        # body carries: a smaller message, and none of a job's scripts in the headers.
        self._app.send_task(
            TASK_NAME,
            args=[job.to_json()],
            queue=job.queue,
            argsrepr=f"(job {job.job_id})",
            kwargsrepr="{}",
        )

    def broker_problem(self) -> str | None:
        """Why the broker cannot be reached now, or None."""
        exc = broker_error(self._app)
        return None if exc is None else f"cannot be reached: {exc.__class__.__name__}: {exc}"

    def shutdown(self, wait: bool) -> None:
        self._app.close()
