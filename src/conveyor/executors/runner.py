"""The one job runner: checkout, run, stream the log, enforce timeout and cancel.

Every executor backend calls `run_job`. The runner owns the job's processes: the
script runs in a session of its own, and whatever ends the job (exit, timeout, cancel,
a shutdown) every process of the job is stopped with SIGTERM, then SIGKILL after the
grace period, including those that left the session (job_process.py, processes.py).
"""

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from conveyor.domain.jobs import JobResult, JobSpec, Outcome
from conveyor.domain.variables import repo_variables
from conveyor.executors.heartbeats import Heartbeats
from conveyor.executors.job_log import JobLog, LogSink
from conveyor.executors.job_process import JobProcess
from conveyor.executors.outputs import OutputFile, parse_outputs
from conveyor.executors.paths import RunnerPaths
from conveyor.executors.processes import RunnerIdentity, start_time
from conveyor.executors.reporting import JobReporter
from conveyor.executors.retrying import RetryingReporter
from conveyor.executors.sandbox import Isolation, bubblewrap_argv
from conveyor.executors.spread_dirs import spread_once
from conveyor.executors.workspace_trash import WorkspaceTrash
from conveyor.scm.mirror import CheckoutError, MirrorCache

logger = logging.getLogger("conveyor.runner")

CANCEL_POLL_S = 0.25
_PASSTHROUGH = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR")


# Beats from claim to result for every job this process runs, whatever the job is
# doing: a long checkout, or the grace period of a stop, must not look like a lost runner.
_HEARTBEATS = Heartbeats()
# Workspaces leave the job's path at once; their files go in the background.
TRASH = WorkspaceTrash()


def _environment(
    spec: JobSpec, workspace: Path, output: Path, marks: Mapping[str, str]
) -> dict[str, str]:
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
        CONVEYOR_WORKSPACE=str(workspace),
        CONVEYOR_OUTPUT=str(output),
    )
    # CONVEYOR_JOB_ID, _RUNNER, _INSTALLATION: how the job's processes are found, however
    # they leave its session, and after a crash of their runner (processes.py).
    env.update(marks)
    for repo in spec.repos:
        commit, branch, pr = repo_variables(repo.repo_name)
        env.update({commit: repo.commit, branch: repo.branch, pr: str(repo.pr)})
    return env


def _read_outputs(output: OutputFile, spec: JobSpec, log: JobLog) -> dict[str, str]:
    data, why = output.read()
    if data is None:
        log.say(f"ignored $CONVEYOR_OUTPUT: it {why}")
        return {}
    return parse_outputs(data, spec.outputs, log.say)


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
    sink: Callable[[], LogSink],
    runner: RunnerIdentity | None = None,
    isolation: Isolation | None = None,
) -> JobResult | None:
    """Run one job to its end and report the result; never raises for job failures, nor
    for a database that is away for a while (retrying.py).

    Returns None, having done nothing, when the job is not this runner's to run: it was
    delivered twice and another runner claimed it, or it was cancelled while queued.
    Raises if the claim itself cannot be recorded: the caller puts the job back.
    """
    reporter = RetryingReporter(reporter, spec.job_id)
    if not reporter.claim():
        return None
    if runner is None:
        pid = os.getpid()
        runner = RunnerIdentity("", socket.gethostname(), pid, start_time(pid))
    secrets = [*spec.secrets.values(), *spec.masked]
    workspace = paths.workspaces / str(spec.job_id)
    heartbeat: int | None = None
    output: OutputFile | None = None
    log: JobLog | None = None
    try:
        log = JobLog(sink(), spec.log_max_bytes, secrets)
        # Beats only once all it vouches for is open: a runner that could not even
        # start the job must not look alive forever.
        heartbeat = _HEARTBEATS.start_beating(reporter, spec.heartbeat_s)
        output = _fresh_workspace(workspace)
        isolation = isolation or Isolation()
        result = _run(spec, paths, reporter, log, workspace, runner, isolation, output)
    except OSError as exc:  # no room or no right for the log or the workspace
        result = JobResult(Outcome.FAILED, None, f"cannot prepare the job: {exc}")
    except Exception as exc:  # a runner bug must still end the job, not hang it
        result = JobResult(Outcome.FAILED, None, f"internal error: {exc}")
        if log is not None:
            log.say(f"internal error: {exc.__class__.__name__}: {exc}")
    finally:
        if output is not None:
            output.close()
        if heartbeat is not None:
            _HEARTBEATS.stop_beating(heartbeat)
    if log is not None:
        log.say(f"{spec.stage} {result.outcome.value}: {result.detail}")
        log.close()
        if log.failure is not None and result.outcome is Outcome.PASSED:
            result = JobResult(Outcome.FAILED, result.exit_code, log.failure)
    try:
        reporter.finished(result)
    finally:
        # After the result: the next job (a deploy waits on this build) need not wait for
        # the disk. The job's processes are gone already; a runner that dies before this
        # line leaves the workspace behind, as one that dies mid-job always has.
        TRASH.discard(workspace)
    return result


def _fresh_workspace(workspace: Path) -> OutputFile:
    """An empty workspace with the control directory that holds $CONVEYOR_OUTPUT."""
    TRASH.discard(workspace)  # a crashed runner's, for a job run again
    spread_once(workspace.parent)
    control = workspace / ".conveyor"
    control.mkdir(parents=True)
    return OutputFile(control)


def _run(
    spec: JobSpec,
    paths: RunnerPaths,
    reporter: JobReporter,
    log: JobLog,
    workspace: Path,
    runner: RunnerIdentity,
    isolation: Isolation,
    output: OutputFile,
) -> JobResult:
    task = f"{spec.workflow_name}#{spec.task_id}"
    log.say(f"{spec.stage} {spec.service} for {task}, attempt {spec.attempt}")
    if not spec.checkout:
        log.say(f"no checkout: the {spec.stage} runs in an empty workspace (checkout: false)")
    else:
        try:
            _checkout(spec, paths, workspace, log)
        except CheckoutError as exc:
            log.say(str(exc))
            return JobResult(Outcome.FAILED, None, str(exc))
    if reporter.cancel_requested():
        return JobResult(Outcome.CANCELLED, None, "cancelled before the script started")
    if log.failure is not None:
        return JobResult(Outcome.FAILED, None, log.failure)
    isolation.hand_over(workspace)
    sandboxed = spec.sandbox == "bubblewrap"
    env = _environment(spec, workspace, output.path, runner.marks(spec.job_id))
    env.update(isolation.environment())
    argv = ["bash", "-eo", "pipefail", "-c", spec.script]
    if sandboxed:
        # Only the objects of the job's own mirrors: a mirror's config holds its URL.
        mirrors = MirrorCache(paths.mirrors)
        checked_out = spec.repos if spec.checkout else ()
        objects = [mirrors.path(repo.url) / "objects" for repo in checked_out]
        argv = bubblewrap_argv(argv, workspace, objects, paths.data_dir, isolation, spec.network)
    proc = JobProcess(
        argv, workspace, env, log, runner, spec.job_id, sandboxed, **isolation.popen_args()
    )
    try:
        reporter.started(proc.pid)
        stopped = _supervise(proc, spec, reporter, log)
    finally:
        # Whatever ended the job, a fault of the runner's own included, none of its
        # processes outlives it: children left behind (`sleep 1000 &`), and those that
        # left the session or double-forked.
        ended = proc.stop(spec.cancel_grace_s)
        code, held = proc.finish()
    log.end_of_output()
    if stopped is None and ended.found:
        names = ", ".join(sorted({p.name for p in ended.found}))
        log.say(f"stopped {len(ended.found)} process(es) the script left running: {names}")
    if ended.left:
        left = ended.left
        names = ", ".join(sorted({p.name for p in left}))
        log.say(
            f"could not stop {len(left)} process(es) of the job, they keep escaping: {names} "
            "(sandbox: bubblewrap contains any process)"
        )
    if held:
        log.say("a process beyond the job's reach still holds its output open; not waiting")
    if log.failure is not None:
        return JobResult(Outcome.FAILED, code, log.failure)
    if stopped is Outcome.TIMEOUT:
        return JobResult(stopped, code, f"timed out after {spec.timeout_s}s")
    if stopped is Outcome.CANCELLED:
        return JobResult(stopped, code, "cancelled")
    if code != 0:
        return JobResult(Outcome.FAILED, code, f"script exited with {code}")
    return JobResult(Outcome.PASSED, 0, "script exited with 0", _read_outputs(output, spec, log))


def _supervise(
    proc: JobProcess, spec: JobSpec, reporter: JobReporter, log: JobLog
) -> Outcome | None:
    """Stream the output until the script exits (None), times out, is cancelled, or its
    log cannot be written (FAILED: the job cannot go on unrecorded)."""
    started = time.monotonic()
    deadline = started + spec.timeout_s
    next_check = started + CANCEL_POLL_S
    while not proc.exited:
        now = time.monotonic()
        if log.failure is not None:
            return Outcome.FAILED
        if now >= deadline:
            log.say(f"timed out after {spec.timeout_s}s; stopping the job's processes")
            return Outcome.TIMEOUT
        if now >= next_check:
            if reporter.cancel_requested():
                log.say("cancelled; stopping the job's processes")
                return Outcome.CANCELLED
            log.flush_if_due()
            next_check = now + CANCEL_POLL_S
        proc.pump(min(deadline, next_check) - now)
    return None
