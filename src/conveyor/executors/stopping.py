"""Stopping the jobs of a runner host that shuts down: a server, or a worker told to
stop now. Each runner sees a cancel, stops its job's processes within the grace, and
records the job failed with the reason, unless a person had cancelled it anyway."""

import threading

from conveyor.domain.jobs import JobResult, Outcome
from conveyor.executors.reporting import JobReporter


class StoppingReporter:
    def __init__(self, inner: JobReporter, stopping: threading.Event, why: str) -> None:
        self._inner = inner
        self._stopping = stopping
        self._why = why

    def claim(self) -> bool:
        return self._inner.claim()

    def started(self, pid: int) -> None:
        self._inner.started(pid)

    def heartbeat(self) -> None:
        self._inner.heartbeat()

    def cancel_requested(self) -> bool:
        return self._stopping.is_set() or self._inner.cancel_requested()

    def finished(self, result: JobResult) -> None:
        shut_down = self._stopping.is_set() and result.outcome is Outcome.CANCELLED
        if shut_down and not self._inner.cancel_requested():
            result = JobResult(Outcome.FAILED, result.exit_code, self._why)
        self._inner.finished(result)
