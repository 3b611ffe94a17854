"""The script of one job, running: its output streamed into the job's log, its exit
watched without reaping it, and every process of the job stopped at the end.

The script is not reaped until the job's members are stopped: while it is a zombie its
pid, session and process group ids cannot be taken by another process, so they still
name the job's processes safely. Its end is its exit, not the end of its output: an
escaped child that holds the pipe open delays neither the timeout nor the result.
"""

import contextlib
import os
import select
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conveyor.executors.job_log import JobLog
from conveyor.executors.processes import (
    ProcessInfo,
    RunnerIdentity,
    Stopped,
    job_members,
    pid_window_s,
    snapshot,
    start_time,
    stop_processes,
)

READ_BYTES = 64 * 1024
READ_PER_PUMP = 16 * READ_BYTES
EXIT_POLL_S = 0.05  # without pidfds only
DRAIN_S = 1.0


class JobProcess:
    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        log: JobLog,
        runner: RunnerIdentity,
        job_id: int,
        sandboxed: bool = False,
        **popen: Any,
    ) -> None:
        self._log = log
        self._sandboxed = sandboxed
        self._runner = runner
        self._job_id = job_id
        self._proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen,
        )
        self.pid = self._proc.pid
        # Every process of the job starts after its script: older ones need no look.
        self._since = start_time(self.pid)
        self._started = time.monotonic()
        assert self._proc.stdout is not None
        self._out: int | None = self._proc.stdout.fileno()
        os.set_blocking(self._out, False)
        self._pidfd: int | None
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except OSError:  # kernel < 5.3: poll for the exit instead
            self._pidfd = None
        self._exited = False

    @property
    def exited(self) -> bool:
        """The script has ended (it stays a zombie until `finish`)."""
        if not self._exited:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            self._exited = os.waitid(os.P_PID, self.pid, flags) is not None
        return self._exited

    def pump(self, timeout: float) -> None:
        """Wait up to `timeout` for output or the script's exit; log what came."""
        fds = [self._out] if self._out is not None else []
        if self._pidfd is not None and not self._exited:
            fds.append(self._pidfd)
        elif not self._exited:
            timeout = min(timeout, EXIT_POLL_S)
        if not fds:
            time.sleep(max(0.0, timeout))
            return
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        if self._pidfd is not None and self._pidfd in ready:
            self._exited = True
        if self._out is not None and self._out in ready:
            self._read_available()

    def _read_available(self) -> None:
        assert self._out is not None
        taken = 0
        while taken < READ_PER_PUMP:
            try:
                chunk = os.read(self._out, READ_BYTES)
            except BlockingIOError:
                return
            if not chunk:
                self._out = None  # every writer has closed it
                return
            self._log.write(chunk)
            taken += len(chunk)

    def members(self) -> list[ProcessInfo]:
        # Soon after the script started, every process of the job has a pid above its
        # own: only those need a look (a trivial job's end read every process's stat).
        recent = time.monotonic() - self._started < pid_window_s()
        found = snapshot(self._since, pids_from=self.pid if recent else None)
        return job_members(found, self._runner, self._job_id, leader=self.pid)

    def stop(self, grace_s: float) -> Stopped:
        """Stop every process of the job (the script too, if it runs): SIGTERM, then
        SIGKILL after `grace_s`; the script's process group gets each signal at once.

        A sandbox's own processes get no SIGTERM: bwrap would die of it at once and take
        the whole namespace down with SIGKILL, leaving the script no grace to clean up.
        They end when the script does, or with the SIGKILL after the grace."""
        return stop_processes(
            self.members,
            grace_s,
            wait=self.pump,
            spare=lambda p: p.name == "bwrap",
            group=self.pid,  # its leader unreaped: the group id cannot be reused
            term_group=not self._sandboxed,
        )

    def finish(self) -> tuple[int, bool]:
        """Reap the script; read the output that is left. Returns the script's exit code
        and whether a process beyond the job's reach still holds its output open."""
        code = self._proc.wait()
        deadline = time.monotonic() + DRAIN_S
        while self._out is not None and time.monotonic() < deadline:
            self.pump(deadline - time.monotonic())
        held = self._out is not None
        assert self._proc.stdout is not None
        self._proc.stdout.close()
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
        return code, held
