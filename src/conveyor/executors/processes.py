"""A job's processes: finding every one of them, and stopping them.

A job's script runs in a session of its own, and every process of the job inherits
marks in its environment: the installation, the runner and the job. At the job's end
(whatever ended it) the runner stops the job's *members*: the script and its
descendants, every process still in its session or process group, and every process
carrying the job's marks. So a child that called `setsid`, double-forked, or closed
its output is found all the same (docs/adr/0010-process-containment.md). Only a
process that both leaves the session and replaces its environment can hide from
this, which is why a job that runs untrusted code belongs in a sandbox, whose PID
namespace holds every process however it tries to leave.

Signals go through a pidfd opened after checking the process's start time, so a pid
reused by an unrelated process is never signalled.
"""

import contextlib
import functools
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

KILL_WAIT_S = 5.0
MARK_INSTALLATION = "CONVEYOR_INSTALLATION"
MARK_RUNNER = "CONVEYOR_RUNNER"
MARK_JOB = "CONVEYOR_JOB_ID"
_MARKS = tuple(f"{m}=".encode() for m in (MARK_INSTALLATION, MARK_RUNNER, MARK_JOB))
# No machine starts processes faster than this: pids cannot come round (pid_max of
# them) in less than pid_max / this many seconds.
MAX_FORKS_PER_S = 100_000


@dataclass(frozen=True, slots=True)
class RunnerIdentity:
    """Who runs jobs: one runner process of one installation (one database)."""

    installation: str
    host: str
    pid: int
    start: int  # the runner process's start time: a pid reused later is not this runner

    @property
    def id(self) -> str:
        """`<host>:<pid>:<start>`, as recorded on the jobs the runner claims."""
        return f"{self.host}:{self.pid}:{self.start}"

    def marks(self, job_id: int) -> dict[str, str]:
        return {MARK_INSTALLATION: self.installation, MARK_RUNNER: self.id, MARK_JOB: str(job_id)}


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int  # clock ticks after boot: with the pid, names one process for good
    name: str
    marks: tuple[tuple[str, str], ...]

    def mark(self, name: str) -> str | None:
        return next((v for k, v in self.marks if k == name), None)


def _read_small(path: str) -> bytes:
    """A /proc file whole: os.open and os.read, without open()'s buffered file object.
    A scan runs at every job's end; pathlib doubled its cost (3.1 against 1.6 ms for 78
    processes here), and open() costs 10 us a file against 7 for this."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 65536)
        if len(data) < 65536:
            return data
        parts = [data]
        while chunk := os.read(fd, 65536):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def _read_process(pid: str, since: int) -> ProcessInfo | None:
    try:
        stat = _read_small(f"/proc/{pid}/stat")
    except OSError:  # gone meanwhile
        return None
    name, _, rest = stat.partition(b" (")[2].rpartition(b") ")
    fields = rest.split()
    start = int(fields[19])
    if fields[0] in (b"Z", b"X") or start < since:  # dead, or older than what we look for
        return None
    try:
        environ = _read_small(f"/proc/{pid}/environ")
    except OSError:  # not ours to read: not ours to stop either, unless it is a descendant
        environ = b""
    marks = tuple(
        (item.partition(b"=")[0].decode(), item.partition(b"=")[2].decode(errors="replace"))
        for item in environ.split(b"\0")
        if item.startswith(_MARKS)
    )
    return ProcessInfo(
        pid=int(pid),
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        sid=int(fields[3]),
        start=start,
        name=name.decode(errors="replace"),
        marks=marks,
    )


def snapshot(since: int = 0, pids_from: int | None = None) -> list[ProcessInfo]:
    """Every living process on this host (as far as this user may read them) started
    at or after `since` (clock ticks after boot, as `ProcessInfo.start`).

    `pids_from`: the caller looks only for processes that got their pid since the one
    of `pids_from` did, and knows pids cannot have come round in between (pid_window_s):
    only pids from it to the last one allocated are read, not every process's stat. If
    the last pid is below it (the pids wrapped) or cannot be read, every one is."""
    upto = last_pid() if pids_from is not None else None
    if pids_from is None or upto is None or upto < pids_from:
        pids_from = upto = None
    found = []
    for pid in os.listdir("/proc"):  # noqa: PTH208
        if not pid.isdigit():
            continue
        if pids_from is not None and upto is not None and not pids_from <= int(pid) <= upto:
            continue
        info = _read_process(pid, since)
        if info is not None:
            found.append(info)
    return found


def last_pid() -> int | None:
    """The pid the kernel gave last in this PID namespace; None if it does not say."""
    try:
        return int(_read_small("/proc/sys/kernel/ns_last_pid"))
    except (OSError, ValueError):
        return None


@functools.cache
def pid_window_s() -> float:
    """How long after a process started every pid given since is still above its own:
    pids come round after pid_max of them, and no machine makes them faster than
    MAX_FORKS_PER_S (32768 pids: a third of a second; 4194304: 42 s)."""
    try:
        return int(_read_small("/proc/sys/kernel/pid_max")) / MAX_FORKS_PER_S
    except (OSError, ValueError):
        return 0.0


def start_time(pid: int) -> int:
    """When `pid` started, in clock ticks after boot; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:  # noqa: PTH123
            return int(f.read().rpartition(b") ")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def job_members(
    processes: Iterable[ProcessInfo], runner: RunnerIdentity, job_id: int, leader: int | None
) -> list[ProcessInfo]:
    """The job's processes: those carrying its marks and, while `leader` (the script,
    kept unreaped so its pid cannot be reused) exists, its descendants and every
    process in its session or process group."""
    procs = list(processes)
    wanted = runner.marks(job_id)
    members = {
        p.pid: p
        for p in procs
        if all(p.mark(k) == v for k, v in wanted.items())
        or (leader is not None and leader in (p.pid, p.sid, p.pgid))
    }
    if leader is not None:
        children: dict[int, list[ProcessInfo]] = {}
        for p in procs:
            children.setdefault(p.ppid, []).append(p)
        todo = [leader]
        while todo:
            for child in children.get(todo.pop(), []):
                if child.pid not in members:
                    members[child.pid] = child
                    todo.append(child.pid)
    return list(members.values())


def _same_process(info: ProcessInfo) -> bool:
    return start_time(info.pid) == info.start


def send_signal(info: ProcessInfo, sig: signal.Signals) -> None:
    """Signal the process `info` names, never one that took its pid meanwhile."""
    try:
        fd = os.pidfd_open(info.pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfds (kernel < 5.3): the start-time check alone
        if _same_process(info):
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, sig)
        return
    try:
        if _same_process(info):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, sig)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Stopped:
    found: list[ProcessInfo]  # what there was to stop
    left: list[ProcessInfo]  # what was still there when the runner gave up


def _signal_group(group: int | None, sig: signal.Signals) -> None:
    # One signal to the whole group at once: a process forking as fast as it can is
    # caught with its children, as a pid-by-pid scan may not.
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)


def stop_processes(
    find: Callable[[], list[ProcessInfo]],
    grace_s: float,
    wait: Callable[[float], None] = time.sleep,
    spare: Callable[[ProcessInfo], bool] = lambda p: False,
    group: int | None = None,
    term_group: bool = True,
) -> Stopped:
    """SIGTERM the processes `find` returns (and process group `group`, if
    `term_group`), wait up to `grace_s` for them and any they start meanwhile (a cleanup
    handler's own commands are left alone) to end, then SIGKILL the group and every one
    still there, again until none is or KILL_WAIT_S has passed. `wait` passes time (a
    runner reads the job's output meanwhile); `spare` names processes that get no
    SIGTERM, only the SIGKILL if they are still there."""
    first = find()
    if term_group:
        _signal_group(group, signal.SIGTERM)
    for p in first:
        if not spare(p):
            send_signal(p, signal.SIGTERM)
    members = first
    pause = 0.005
    deadline = time.monotonic() + grace_s
    while members and time.monotonic() < deadline:
        wait(pause)
        pause = min(pause * 2, 0.1)
        members = find()
    deadline = time.monotonic() + KILL_WAIT_S
    while members:
        _signal_group(group, signal.SIGKILL)
        for p in members:
            send_signal(p, signal.SIGKILL)
        if time.monotonic() >= deadline:
            break
        wait(0.01)
        members = find()
    return Stopped(first, members)


def runner_host(runner_id: str) -> str:
    return runner_id.split(":", 1)[0]


def runner_alive(runner_id: str) -> bool:
    """Whether the runner `<host>:<pid>:<start>` on this host still runs: its pid is
    alive and started when the runner did (ids of older runners have no start)."""
    _, _, rest = runner_id.partition(":")
    pid, _, start = rest.partition(":")
    if not pid.isdigit() or not process_alive(int(pid)):
        return False
    return not start.isdigit() or start_time(int(pid)) == int(start)


def processes_of_dead_runners(installation: str, hostname: str) -> dict[int, list[ProcessInfo]]:
    """Job processes of this installation on this host whose runner is dead, by job id.
    Another installation's processes are never its business, dead runner or not."""
    found: dict[int, list[ProcessInfo]] = {}
    for p in snapshot():
        runner = p.mark(MARK_RUNNER) or ""
        job = p.mark(MARK_JOB) or ""
        if (
            p.mark(MARK_INSTALLATION) == installation
            and runner_host(runner) == hostname
            and job.isdigit()
            and not runner_alive(runner)
        ):
            found.setdefault(int(job), []).append(p)
    return found


def process_alive(pid: int) -> bool:
    """A process that exists and has not exited (a zombie has: it only awaits reaping)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_orphans(runner: RunnerIdentity, grace_s: float) -> dict[int, int]:
    """Stop the job processes this installation's dead runners left on this host (what
    they start meanwhile included); returns job id -> how many were found at first."""

    def find() -> dict[int, list[ProcessInfo]]:
        return processes_of_dead_runners(runner.installation, runner.host)

    found = find()
    if found:
        stop_processes(lambda: [p for procs in find().values() for p in procs], grace_s)
    return {job: len(procs) for job, procs in found.items()}
