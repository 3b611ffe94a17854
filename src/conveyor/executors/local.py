"""The embedded executor: a bounded pool of job runners in the server process."""

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from conveyor.domain.jobs import JobResult, JobSpec
from conveyor.executors.job_log import LogSink
from conveyor.executors.paths import RunnerPaths
from conveyor.executors.processes import RunnerIdentity
from conveyor.executors.reporting import JobReporter
from conveyor.executors.runner import TRASH, run_job
from conveyor.executors.sandbox import Isolation
from conveyor.executors.stopping import StoppingReporter

log = logging.getLogger("conveyor.executor.local")


class LocalExecutor:
    def __init__(
        self,
        paths: RunnerPaths,
        max_workers: int,
        reporter_for: Callable[[JobSpec], JobReporter],
        sink_for: Callable[[JobSpec], LogSink],
        runner: Callable[[], RunnerIdentity],
        isolation: Isolation,
    ) -> None:
        self._sink_for = sink_for
        self._paths = paths
        self._runner = runner
        self._isolation = isolation
        self._reporter_for = reporter_for
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="conveyor-job")
        self._stopping = threading.Event()

    def submit(self, job: JobSpec) -> None:
        reporter = StoppingReporter(
            self._reporter_for(job), self._stopping, "server shut down while it ran"
        )
        future = self._pool.submit(
            run_job,
            job,
            self._paths,
            reporter,
            lambda: self._sink_for(job),
            runner=self._runner(),
            isolation=self._isolation,
        )
        future.add_done_callback(lambda f: _log_failure(job, f))

    def shutdown(self, wait: bool) -> None:
        """Stop running jobs (they end failed: "server shut down") and the pool."""
        self._stopping.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        if wait:  # a clean stop leaves no workspace behind
            TRASH.drain()


def _log_failure(job: JobSpec, future: "Future[JobResult | None]") -> None:
    exc = future.exception()
    if exc is not None:
        log.error("job %s: could not report its result: %s", job.job_id, exc, exc_info=exc)
