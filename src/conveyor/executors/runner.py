"""The one job runner: checkout, run, stream the log, enforce timeout and cancel.

Every executor backend calls `run_job`. The runner owns the job's process tree: the
script runs in a session of its own, and whatever ends the job (exit, timeout, cancel)
the whole process group is stopped with SIGTERM, then SIGKILL after the grace period,
so no child outlives its job.
"""

import contextlib
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from conveyor.domain.jobs import JobResult, JobSpec, Outcome
from conveyor.domain.masking import SecretPatterns, StreamMasker
from conveyor.domain.variables import repo_variables, variable_name_problem
from conveyor.executors.base import FileLogSink, JobReporter, LogSink, RunnerPaths
from conveyor.executors.processes import stop_process_group
from conveyor.scm.mirror import CheckoutError, MirrorCache

logger = logging.getLogger("conveyor.runner")

CANCEL_POLL_S = 0.25
READ_BYTES = 64 * 1024
_PASSTHROUGH = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR")
_OUTPUT_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")


class JobLog:
    """A job's log as output comes: secrets masked wherever they fall, capped, handed to
    a sink."""

    def __init__(self, sink: LogSink, max_bytes: int, secrets: Iterable[str]) -> None:
        self._sink = sink
        self._max = max_bytes
        self._size = 0
        self._truncated = False
        self._masker = StreamMasker(SecretPatterns(secrets))
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._append(self._masker.feed(data))

    def _append(self, data: bytes) -> None:
        if self._truncated or not data:
            return
        room = self._max - self._size
        if len(data) > room:
            data = data[:room] + f"\n[conveyor] log truncated at {self._max} bytes\n".encode()
            self._truncated = True
        self._sink.append(data)
        self._size += len(data)

    def flush_if_due(self) -> None:
        with self._lock:
            self._sink.flush_if_due()

    def say(self, line: str) -> None:
        self.write(f"[conveyor] {line}\n".encode())

    def close(self) -> None:
        with self._lock:
            self._append(self._masker.flush())
            self._sink.close()


def _pump(stream: BinaryIO, log: JobLog) -> None:
    # Whatever has arrived, up to READ_BYTES: the masker needs no line boundaries, and
    # memory stays constant whatever the job prints.
    fd = stream.fileno()
    for chunk in iter(lambda: os.read(fd, READ_BYTES), b""):
        log.write(chunk)


def _heartbeat(reporter: JobReporter, interval_s: float, stop: threading.Event) -> None:
    """Beat from claim to result, whatever the job is doing: a long checkout, or the
    grace period of a stop, must not look like a lost runner."""
    while not stop.wait(interval_s):
        try:
            reporter.heartbeat()
        except Exception:  # a database hiccup must not end the job; the next beat retries
            logger.warning("heartbeat failed; retrying in %.1fs", interval_s, exc_info=True)


def _environment(spec: JobSpec, workspace: Path, output: Path, runner_id: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
    env.update(spec.variables)
    env.update(spec.secrets)
    env.update(
        CONVEYOR_TASK_ID=str(spec.task_id),
        CONVEYOR_WORKFLOW=spec.workflow_name,
        CONVEYOR_ENV=spec.env_name,
        CONVEYOR_SERVICE=spec.service,
        CONVEYOR_STAGE=spec.stage,
        CONVEYOR_ATTEMPT=str(spec.attempt),
        CONVEYOR_JOB_ID=str(spec.job_id),
        # Lets a restarted worker find what a dead one left running (processes.py).
        CONVEYOR_RUNNER=runner_id,
        CONVEYOR_WORKSPACE=str(workspace),
        CONVEYOR_OUTPUT=str(output),
    )
    for repo in spec.repos:
        commit, branch, pr = repo_variables(repo.repo_name)
        env.update({commit: repo.commit, branch: repo.branch, pr: str(repo.pr)})
    return env


def _read_outputs(path: Path, log: JobLog) -> dict[str, str]:
    outputs: dict[str, str] = {}
    if not path.exists():
        return outputs
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _OUTPUT_LINE.fullmatch(line)
        if m is None:
            log.say(f"ignored line {n} of $CONVEYOR_OUTPUT: expected KEY=value, got {line[:80]!r}")
            continue
        problem = variable_name_problem(m.group(1))
        if problem:
            log.say(f"ignored line {n} of $CONVEYOR_OUTPUT: {m.group(1)} {problem}")
            continue
        outputs[m.group(1)] = m.group(2)
    return outputs


def _checkout(spec: JobSpec, paths: RunnerPaths, workspace: Path, log: JobLog) -> None:
    mirrors = MirrorCache(paths.mirrors)
    for repo in spec.repos:
        pinned = [repo.commit] + ([repo.base_commit] if repo.base_commit else [])
        mirror = mirrors.ensure(repo.url, pinned)
        if repo.pr > 0 and repo.base_commit:
            log.say(
                f"checking out {repo.repo_name}: merge request !{repo.pr} ({repo.commit[:12]}) "
                f"merged onto {repo.branch} ({repo.base_commit[:12]})"
            )
            mirrors.checkout(
                mirror, workspace / repo.repo_name, repo.base_commit, merge=repo.commit
            )
        else:
            log.say(f"checking out {repo.repo_name} at {repo.commit[:12]} ({repo.branch})")
            mirrors.checkout(mirror, workspace / repo.repo_name, repo.commit)


def run_job(
    spec: JobSpec,
    paths: RunnerPaths,
    reporter: JobReporter,
    sink: LogSink | None = None,
    runner_id: str = "",
) -> JobResult | None:
    """Run one job to its end and report the result; never raises for job failures.

    Returns None, having done nothing, when the job is not this runner's to run: it was
    delivered twice and another runner claimed it, or it was cancelled while queued.
    """
    if not reporter.claim():
        return None
    beating = threading.Event()
    heart = threading.Thread(
        target=_heartbeat, args=(reporter, spec.heartbeat_s, beating), daemon=True
    )
    heart.start()
    secrets = [*spec.secrets.values(), *spec.masked]
    log = JobLog(sink or FileLogSink(paths.log(spec.job_id)), spec.log_max_bytes, secrets)
    workspace = paths.workspaces / str(spec.job_id)
    try:
        result = _run(spec, paths, reporter, log, workspace, runner_id)
    except Exception as exc:  # a runner bug must still end the job, not hang it
        log.say(f"internal error: {exc.__class__.__name__}: {exc}")
        result = JobResult(Outcome.FAILED, None, f"internal error: {exc}")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
        beating.set()
        heart.join()
    log.say(f"{spec.stage} {result.outcome.value}: {result.detail}")
    log.close()
    reporter.finished(result)
    return result


def _run(
    spec: JobSpec,
    paths: RunnerPaths,
    reporter: JobReporter,
    log: JobLog,
    workspace: Path,
    runner_id: str,
) -> JobResult:
    shutil.rmtree(workspace, ignore_errors=True)
    control = workspace / ".conveyor"
    control.mkdir(parents=True)
    output = control / "output"
    task = f"{spec.workflow_name}#{spec.task_id}"
    log.say(f"{spec.stage} {spec.service} for {task}, attempt {spec.attempt}")
    try:
        _checkout(spec, paths, workspace, log)
    except CheckoutError as exc:
        log.say(str(exc))
        return JobResult(Outcome.FAILED, None, str(exc))
    if reporter.cancel_requested():
        return JobResult(Outcome.CANCELLED, None, "cancelled before the script started")
    proc = subprocess.Popen(
        ["bash", "-eo", "pipefail", "-c", spec.script],
        cwd=workspace,
        env=_environment(spec, workspace, output, runner_id),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    reporter.started(proc.pid)
    pump = threading.Thread(target=_pump, args=(proc.stdout, log), daemon=True)
    pump.start()
    started = time.monotonic()
    stopped: Outcome | None = None
    while proc.poll() is None:
        _wait(proc, pump, CANCEL_POLL_S)
        now = time.monotonic()
        if proc.returncode is not None:
            break
        if now - started > spec.timeout_s:
            log.say(f"timed out after {spec.timeout_s}s; stopping the job's processes")
            stopped = Outcome.TIMEOUT
        elif reporter.cancel_requested():
            log.say("cancelled; stopping the job's processes")
            stopped = Outcome.CANCELLED
        if stopped is not None:
            stop_process_group(proc, spec.cancel_grace_s)
            break
        log.flush_if_due()
    # Children the script left behind (`sleep 1000 &`) belong to the job and end with it.
    stop_process_group(proc, spec.cancel_grace_s)
    pump.join()
    proc.stdout.close()
    code = proc.returncode
    if stopped is Outcome.TIMEOUT:
        return JobResult(stopped, code, f"timed out after {spec.timeout_s}s")
    if stopped is Outcome.CANCELLED:
        return JobResult(stopped, code, "cancelled")
    if code != 0:
        return JobResult(Outcome.FAILED, code, f"script exited with {code}")
    return JobResult(Outcome.PASSED, 0, "script exited with 0", _read_outputs(output, log))


def _wait(proc: subprocess.Popen[bytes], pump: threading.Thread, seconds: float) -> None:
    """Return when the script exits or `seconds` pass, whichever is first."""
    if pump.is_alive():
        # The output ends the moment the script exits: joining the pump wakes at once,
        # where Popen.wait(timeout) polls with a back-off of up to 50 ms.
        pump.join(seconds)
        if pump.is_alive():
            return
    # Output closed: the script has exited, or closed its stdout and runs on.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=seconds)
