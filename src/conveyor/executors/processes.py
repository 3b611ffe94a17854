"""Stopping a job's process group, and finding a job's processes after a crash."""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

KILL_WAIT_S = 10.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the job's process group, SIGKILL it after `grace_s`; return when it is gone."""
    pgid = proc.pid  # start_new_session: the shell leads its own group
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, KILL_WAIT_S)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            proc.wait()
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()  # reap the shell, or the group never looks empty
            if not _group_alive(pgid):
                return
            time.sleep(0.02)
    proc.wait()


def _environ(entry: Path) -> dict[bytes, bytes]:
    pairs = (item.partition(b"=") for item in (entry / "environ").read_bytes().split(b"\0"))
    return {k: v for k, _, v in pairs if k}


def processes_of_dead_runners(
    hostname: str, pid_alive: Callable[[int], bool], proc_root: Path = Path("/proc")
) -> dict[int, list[int]]:
    """Job processes on this host whose runner (`CONVEYOR_RUNNER=<host>:<pid>`) is dead,
    by job id. The database may already call the job lost; its processes still run."""
    found: dict[int, list[int]] = {}
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = _environ(entry)
        except OSError:
            continue
        runner = env.get(b"CONVEYOR_RUNNER", b"").decode(errors="replace")
        host, _, pid = runner.rpartition(":")
        job = env.get(b"CONVEYOR_JOB_ID", b"")
        if host == hostname and pid.isdigit() and job.isdigit() and not pid_alive(int(pid)):
            found.setdefault(int(job), []).append(int(entry.name))
    return found


def stop_pids(pids: list[int], grace_s: float) -> None:
    """SIGTERM, then SIGKILL after `grace_s` for those still there."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, KILL_WAIT_S)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(process_alive(p) for p in pids):
            time.sleep(0.05)


def process_alive(pid: int) -> bool:
    """A process that exists and has not exited (a zombie has: it only awaits reaping)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"
