"""Faults around the runner: a database that goes away, a disk that fills up, a bug.
Every job still ends in a recorded state, on time, with no process left behind."""

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.domain.jobs import JobResult, Outcome
from conveyor.executors import retrying, runner
from conveyor.executors.paths import RunnerPaths
from tests.conftest import GitRepo, alive
from tests.executors.conftest import (
    RecordingReporter,
    log_of,
    run_with_file_log,
    spec_for,
    wait_for,
)


class Outage(Exception):
    """What a database driver raises while its server is away."""


class FlakyReporter(RecordingReporter):
    """The database as a runner sees it: `down` makes every report raise."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()
        self.failed: list[str] = []  # the reports refused, by kind

    def _check(self, kind: str) -> None:
        if self.down.is_set():
            self.failed.append(kind)
            raise Outage("connection refused")

    def claim(self) -> bool:
        self._check("claim")
        return super().claim()

    def cancel_requested(self) -> bool:
        self._check("cancel_requested")
        return super().cancel_requested()

    def heartbeat(self) -> None:
        self._check("heartbeat")
        super().heartbeat()

    def finished(self, result: JobResult) -> None:
        self._check("finished")
        super().finished(result)

    def wait_refused(self, kind: str, count: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.failed.count(kind) < count:
            assert time.monotonic() < deadline, f"no {kind} was refused"
            time.sleep(0.01)


def start(
    spec_script: str,
    repo: GitRepo,
    paths: RunnerPaths,
    reporter: RecordingReporter,
    **overrides: object,
) -> tuple[threading.Thread, list[JobResult | None]]:
    spec = spec_for(repo, spec_script, cancel_grace_s=1, **overrides)
    out: list[JobResult | None] = []
    thread = threading.Thread(target=lambda: out.append(run_with_file_log(spec, paths, reporter)))
    thread.start()
    return thread, out


def test_a_database_outage_mid_job_costs_the_job_nothing(
    repo: GitRepo, paths: RunnerPaths, tmp_path: Path
) -> None:
    reporter = FlakyReporter()
    ready, release = tmp_path / "ready", tmp_path / "release"
    script = f"touch {ready}\nwhile [ ! -e {release} ]; do sleep 0.02; done\necho finished"
    thread, _ = start(script, repo, paths, reporter)
    wait_for_file(ready)
    reporter.down.set()  # the job's cancel checks fail from now on
    reporter.wait_refused("cancel_requested", 2)
    release.touch()  # the script ends while the database is still away
    reporter.wait_refused("finished")  # its result is held, not dropped
    assert reporter.results == []
    reporter.down.clear()
    thread.join(10)
    assert [r.outcome for r in reporter.results] == [Outcome.PASSED]
    assert "finished" in log_of(paths)


def test_a_cancel_check_that_keeps_failing_does_not_stop_the_timeout(
    repo: GitRepo, paths: RunnerPaths, tmp_path: Path
) -> None:
    reporter = FlakyReporter()
    pid_file = tmp_path / "pid"
    thread, _ = start(f"echo $$ > {pid_file}\nsleep 300", repo, paths, reporter, timeout_s=1)
    pid = int(wait_for(pid_file))
    reporter.down.set()
    reporter.wait_refused("finished")  # the timeout came, and stopped the job, all the same
    assert not alive(pid)
    reporter.down.clear()
    thread.join(10)
    assert [(r.outcome, r.detail) for r in reporter.results] == [
        (Outcome.TIMEOUT, "timed out after 1s")
    ]
    assert not alive(pid)


def test_a_claim_that_cannot_be_recorded_raises_and_runs_nothing(
    repo: GitRepo, paths: RunnerPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrying, "CLAIM_RETRY_S", 0.3)
    reporter = FlakyReporter()
    reporter.down.set()
    marker = tmp_path / "ran"
    with pytest.raises(Outage):
        run_with_file_log(spec_for(repo, f"touch {marker}"), paths, reporter)
    assert not marker.exists() and reporter.results == []


def test_a_runner_fault_mid_job_still_stops_its_processes_and_records_it(
    repo: GitRepo, paths: RunnerPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"

    def broken_supervise(*args: object) -> Outcome | None:
        wait_for(pid_file)
        raise RuntimeError("a bug in the runner")

    monkeypatch.setattr(runner, "_supervise", broken_supervise)
    reporter = RecordingReporter()
    result = run_with_file_log(
        spec_for(repo, f"sleep 300 & echo $! > {pid_file}\nsleep 300", cancel_grace_s=1),
        paths,
        reporter,
    )
    assert result is not None
    assert (result.outcome, result.detail) == (
        Outcome.FAILED,
        "internal error: a bug in the runner",
    )
    assert not alive(int(pid_file.read_text()))
    assert reporter.results == [result]


def test_a_log_that_cannot_be_opened_fails_the_job_and_nothing_beats_on(
    repo: GitRepo, paths: RunnerPaths
) -> None:
    paths.log(7).parent.parent.mkdir(parents=True, exist_ok=True)
    paths.log(7).parent.write_text("not a directory")  # logs/ cannot be made
    reporter = RecordingReporter()
    result = run_with_file_log(spec_for(repo, "true", heartbeat_s=0.05), paths, reporter)
    assert result is not None and result.outcome is Outcome.FAILED
    assert result.detail.startswith("cannot prepare the job: ")
    beats = reporter.beats
    time.sleep(0.2)
    assert reporter.beats == beats, "a heartbeat outlived the job"


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB file system: writing past it is ENOSPC, as on a full disk."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root, to mount a tiny tmpfs for the full-disk tests")
        pytest.skip("mounting a tiny file system needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_fails_the_job_with_the_reason_on_time(
    repo: GitRepo, tiny_disk: Path, tmp_path: Path, paths: RunnerPaths
) -> None:
    # Mirrors and workspaces where there is room; the logs on the tiny disk.
    log_paths = RunnerPaths(paths.data_dir)
    (paths.data_dir).mkdir(parents=True, exist_ok=True)
    (paths.data_dir / "logs").symlink_to(tiny_disk)
    pid_file = tmp_path / "pid"
    script = f"sleep 300 & echo $! > {pid_file}\nhead -c 1000000 /dev/zero | tr '\\0' x\nsleep 300"
    reporter = RecordingReporter()
    t0 = time.monotonic()
    result = run_with_file_log(spec_for(repo, script, cancel_grace_s=1), log_paths, reporter)
    assert time.monotonic() - t0 < 1 + 5
    assert result is not None
    assert (result.outcome, result.detail) == (
        Outcome.FAILED,
        "cannot write the job's log: No space left on device",
    )
    assert reporter.results == [result]
    assert not alive(int(pid_file.read_text()))


def wait_for_file(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)
