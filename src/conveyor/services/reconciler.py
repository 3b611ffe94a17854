"""Start-up reconciliation: nothing left running by a server that died.

Queued tasks simply run. A job still marked running on this host lost its runner with
the old server: its leftover processes are stopped (found by process group, and only
if they carry the job's id) and the job fails as "server restarted"; the scheduler then
ends its task as usual, and a restart reruns it. See docs/adr/0006-crash-recovery.md.
"""

import logging
from collections.abc import Callable

from conveyor.domain.jobs import JobRow
from conveyor.domain.states import JobState
from conveyor.services.ports import Clock, JobStore

log = logging.getLogger("conveyor.reconciler")

StopOrphan = Callable[[int, int, float], int]
"""(pgid, job_id, grace_s) -> how many processes were found and stopped."""


def reconcile(
    store: JobStore, host: str, stop_orphan: StopOrphan, grace_s: float, clock: Clock
) -> int:
    """Fail every job this host's previous server left running; returns how many."""
    resolved = 0
    for job, pid in store.running_jobs_on(host):
        found = stop_orphan(pid, job.id, grace_s) if pid else 0
        resolved += _fail(store, job, "server restarted while the job ran", found, clock)
    return resolved


def _fail(store: JobStore, job: JobRow, why: str, found: int, clock: Clock) -> int:
    """Fail a job its runner left behind, saying how many processes were stopped; 1 if
    this call failed it, 0 if it had ended meanwhile."""
    detail = why + (
        f"; stopped {found} leftover process{'es' if found > 1 else ''}" if found else ""
    )
    if not store.move_job(job, JobState.FAILED, clock(), detail):
        return 0
    log.warning("job %s: %s", job.id, detail)
    return 1


FindOrphans = Callable[[str, Callable[[int], bool]], dict[int, list[int]]]
"""(hostname, pid_alive) -> job id -> live processes of that job whose runner is dead."""
StopPids = Callable[[list[int], float], None]


def reconcile_dead_workers(
    store: JobStore,
    hostname: str,
    pid_alive: Callable[[int], bool],
    find_orphans: FindOrphans,
    stop_pids: StopPids,
    grace_s: float,
    clock: Clock,
) -> int:
    """A worker starting on `hostname` ends what workers there that died left behind.

    Workers name themselves `<hostname>:<pid>` and mark their jobs' processes with it.
    Processes of a dead worker are stopped whatever the database says (the reaper may
    already have failed the job as lost); jobs still marked running fail as lost.
    """
    orphans = find_orphans(hostname, pid_alive)
    for job_id, pids in orphans.items():
        stop_pids(pids, grace_s)
        log.warning("job %s: stopped %d processes its dead worker left", job_id, len(pids))
    resolved = 0
    for job, _pid, runner in store.running_jobs_of_host(hostname):
        worker_pid = runner.rpartition(":")[2]
        if not worker_pid.isdigit() or pid_alive(int(worker_pid)):
            continue
        found = len(orphans.get(job.id, []))
        resolved += _fail(store, job, "worker lost: its worker process died", found, clock)
    return resolved
