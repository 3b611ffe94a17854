"""Start-up reconciliation: nothing left running by a runner that died.

Every runner, the server's local executor and each celery worker alike, names itself
`<hostname>:<pid>:<start time>`, records that on the jobs it claims, and marks its jobs' processes
with it and with the installation's id. When a server or worker starts on a host, it
stops the processes of its own installation whose runner there is dead, whatever the
database says (the reaper may have failed those jobs already), and fails the jobs still
marked running for a dead runner. Another installation's processes on the same host are
never touched. The scheduler then ends their tasks as usual; a restart reruns them.
See docs/adr/0006-crash-recovery.md.
"""

import logging
import threading
from collections.abc import Callable

from conveyor.domain.states import JobState
from conveyor.services.ports import Clock, JobStore

log = logging.getLogger("conveyor.reconciler")

StopOrphans = Callable[[], dict[int, int]]
"""Stop the processes on this host whose runner is dead: job id -> how many there were."""


def reconcile_dead_runners(
    store: JobStore,
    hostname: str,
    runner_alive: Callable[[str], bool],
    stop_orphans: StopOrphans,
    why: str,
    clock: Clock,
) -> int:
    """End what dead runners on `hostname` left; returns how many jobs it failed (`why`)."""
    stopped = stop_orphans()
    for job_id, count in stopped.items():
        log.warning("job %s: stopped %d processes its dead runner left", job_id, count)
    failed = 0
    for job, runner in store.running_jobs_of_host(hostname):
        if runner_alive(runner):
            continue
        found = stopped.get(job.id, 0)
        detail = why + (
            f"; stopped {found} leftover process{'es' if found > 1 else ''}" if found else ""
        )
        if store.move_job(job, JobState.FAILED, clock(), detail):
            failed += 1
            log.warning("job %s: %s", job.id, detail)
    return failed


class OrphanSweeper:
    """Runs `reconcile_dead_runners` every `interval_s` in a live runner host (a server
    with the local executor, a worker): a runner that dies on this host leaves nothing
    running for longer than that, whether or not a new runner starts here."""

    def __init__(self, sweep: Callable[[], int], interval_s: float) -> None:
        self._sweep = sweep
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="conveyor-orphans", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._sweep()
            except Exception:  # the database may be away; the next sweep tries again
                log.warning("sweeping the orphans of dead runners failed", exc_info=True)
