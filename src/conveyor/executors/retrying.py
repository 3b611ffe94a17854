"""A runner's reports that outlast a database outage.

The job goes on while the database is away: a cancel check that fails counts as "no
cancel" and is tried again with backoff; the result is retried until the database
takes it (for up to FINISH_RETRY_S; past that, the server's reaper fails the job as
lost once it can). Only the claim, which decides whether this runner may run the job
at all, is given up on, after CLAIM_RETRY_S, by raising: its caller puts the job back.
"""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from conveyor.domain.jobs import JobResult
from conveyor.executors.reporting import JobReporter

log = logging.getLogger("conveyor.runner")

CLAIM_RETRY_S = 30.0
FINISH_RETRY_S = 120.0
BACKOFF_MAX_S = 5.0

_T = TypeVar("_T")


def retry(call: Callable[[], _T], what: str, within_s: float) -> _T:
    """`call()`, tried again with backoff on any error until `within_s` has passed."""
    deadline = time.monotonic() + within_s
    pause = 0.1
    while True:
        try:
            return call()
        except Exception as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("could not %s (%s); retrying in %.1fs", what, exc, pause)
        time.sleep(pause)  # the database is away: nothing to do but wait for it
        pause = min(BACKOFF_MAX_S, pause * 2)


class RetryingReporter:
    def __init__(self, inner: JobReporter, job_id: int) -> None:
        self._inner = inner
        self._job_id = job_id
        self._quiet_until = 0.0
        self._backoff = 0.0

    def claim(self) -> bool:
        return retry(self._inner.claim, f"claim job {self._job_id}", CLAIM_RETRY_S)

    def started(self, pid: int) -> None:
        try:
            self._inner.started(pid)
        except Exception as exc:  # the pid is for people; the job runs on without it
            log.warning("job %s: could not record its pid: %s", self._job_id, exc)

    def heartbeat(self) -> None:
        self._inner.heartbeat()

    def cancel_requested(self) -> bool:
        now = time.monotonic()
        if now < self._quiet_until:
            return False
        try:
            answer = self._inner.cancel_requested()
        except Exception as exc:
            self._backoff = min(BACKOFF_MAX_S, max(0.5, self._backoff * 2))
            self._quiet_until = now + self._backoff
            log.warning(
                "job %s: cannot check for a cancel (%s); the job goes on, asking again in %.1fs",
                self._job_id,
                exc,
                self._backoff,
            )
            return False
        self._backoff = 0.0
        return answer

    def finished(self, result: JobResult) -> None:
        retry(
            lambda: self._inner.finished(result),
            f"record the end of job {self._job_id}",
            FINISH_RETRY_S,
        )
