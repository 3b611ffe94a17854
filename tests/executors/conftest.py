"""The runner's test doubles and fixtures: a reporter that records, and job specs."""

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor.domain.jobs import JobResult, JobSpec
from conveyor.domain.tasks import ResolvedRepo
from conveyor.executors.paths import RunnerPaths
from conveyor.executors.runner import run_job
from conveyor.executors.sandbox import Isolation
from conveyor.storage.log_store import FileLogSink
from tests.conftest import GitRepo, RepoFactory


class RecordingReporter:
    """Stands in for the database: records reports, and lets a test ask for a cancel."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.beats = 0
        self.pids: list[int] = []
        self.results: list[JobResult] = []
        self.claimable = True

    def claim(self) -> bool:
        return self.claimable

    def started(self, pid: int) -> None:
        self.pids.append(pid)

    def heartbeat(self) -> None:
        self.beats += 1

    def cancel_requested(self) -> bool:
        return self.cancel.is_set()

    def finished(self, result: JobResult) -> None:
        self.results.append(result)


def run_claimed(spec: JobSpec, paths: RunnerPaths, reporter: RecordingReporter) -> JobResult:
    result = run_with_file_log(spec, paths, reporter)
    assert result is not None, "the job was not claimed"
    return result


def spec_for(repo: GitRepo, script: str, **overrides: object) -> JobSpec:
    fields: dict[str, object] = {
        "job_id": 7,
        "task_pk": 1,
        "workflow_name": "wf",
        "task_id": 3,
        "attempt": 2,
        "stage": "build",
        "service": "svc",
        "env_name": "dev",
        "repos": (ResolvedRepo("voting-app", repo.url, "main", 0, repo.head("main")),),
        "script": script,
        "timeout_s": 60,
        "variables": (("NAMESPACE", "dev"),),
        "cancel_grace_s": 2,
    }
    fields.update(overrides)
    return JobSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture
def paths(tmp_path: Path) -> RunnerPaths:
    return RunnerPaths(tmp_path / "data")


@pytest.fixture
def repo(make_repo: RepoFactory) -> GitRepo:
    return make_repo("voting-app")


def log_of(paths: RunnerPaths, job_id: int = 7) -> str:
    return paths.log(job_id).read_text()


def wait_for(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


# A job whose TERM handler needs a moment, and runs a command of its own, to clean up.
CLEANS_UP_ON_TERM = (
    "trap 'echo cleaning up; sleep 0.3; echo cleaned; exit 1' TERM\necho ready\nsleep 300 & wait"
)


def cancel_when_ready(
    spec: JobSpec, paths: RunnerPaths, isolation: Isolation | None = None
) -> RecordingReporter:
    """Run `spec`, cancel it once its log says `ready`, and wait for its end."""
    reporter = RecordingReporter()
    runner = threading.Thread(
        target=run_with_file_log, args=(spec, paths, reporter), kwargs={"isolation": isolation}
    )
    runner.start()
    deadline = time.monotonic() + 20
    while not paths.log(spec.job_id).exists() or "ready" not in log_of(paths, spec.job_id):
        assert time.monotonic() < deadline, "the job never got ready"
        time.sleep(0.01)
    reporter.cancel.set()
    runner.join(spec.cancel_grace_s + 5)
    assert not runner.is_alive()
    return reporter


def run_with_file_log(
    spec: JobSpec, paths: RunnerPaths, reporter: RecordingReporter, **kwargs: Any
) -> JobResult | None:
    """`run_job` with its log in a file under `paths`, as the local executor keeps it."""
    return run_job(spec, paths, reporter, lambda: FileLogSink(paths.log(spec.job_id)), **kwargs)
