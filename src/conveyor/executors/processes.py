"""Stopping a job's process group, and finding a job's processes after a crash."""

import contextlib
import os
import signal
import subprocess
import time
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


def job_processes(pgid: int, job_id: int, proc_root: Path = Path("/proc")) -> list[int]:
    """Live processes of group `pgid` that belong to job `job_id`.

    After a crash the recorded pid may have been reused by an unrelated process, so a
    process counts only if its environment carries the job's CONVEYOR_JOB_ID.
    """
    marker = f"CONVEYOR_JOB_ID={job_id}".encode()
    found = []
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(") ", 1)[1].split()
            state, pgrp = fields[0], int(fields[2])
            if pgrp != pgid or state == "Z":
                continue
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return found


def stop_orphaned_job(pgid: int, job_id: int, grace_s: float) -> int:
    """Stop what is left of a job whose runner died; returns how many processes it found."""
    pids = job_processes(pgid, job_id)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, KILL_WAIT_S)):
        alive = job_processes(pgid, job_id)
        if not alive:
            break
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and job_processes(pgid, job_id):
            time.sleep(0.05)
    return len(pids)
