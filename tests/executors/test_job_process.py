"""No process outlives its job, however it tries to leave: setsid, a double fork, a
closed or a held-open output; whatever ends the job: its exit, a timeout, a cancel."""

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conveyor.domain.jobs import JobResult, Outcome
from conveyor.executors.paths import RunnerPaths
from conveyor.executors.processes import (
    RunnerIdentity,
    job_members,
    runner_alive,
    snapshot,
    start_time,
)
from tests.conftest import GitRepo, alive
from tests.executors.conftest import (
    CLEANS_UP_ON_TERM,
    RecordingReporter,
    cancel_when_ready,
    log_of,
    run_with_file_log,
    spec_for,
    wait_for,
)

GRACE = 1
# Each escape writes the pid of the process that got away to $PIDS, one per line.
ESCAPES = {
    "setsid": "setsid bash -c 'echo $$ >> \"$PIDS\"; exec sleep 300' &",
    "setsid, output closed": (
        "setsid bash -c 'echo $$ >> \"$PIDS\"; exec sleep 300' > /dev/null 2>&1 &"
    ),
    "double fork": "( bash -c 'echo $$ >> \"$PIDS\"; exec sleep 300' & ) &",
    "daemon: double fork, setsid, output closed": (
        "( setsid bash -c 'echo $$ >> \"$PIDS\"; exec sleep 300' < /dev/null > /dev/null 2>&1 & )"
    ),
    "setsid, ignores SIGTERM": (
        'setsid bash -c \'trap "" TERM; echo $$ >> "$PIDS"; while :; do sleep 1; done\' &'
    ),
}


def _run_in_thread(
    spec_script: str, repo: GitRepo, paths: RunnerPaths, pids: Path, **overrides: object
) -> tuple[threading.Thread, RecordingReporter, list[JobResult | None]]:
    reporter = RecordingReporter()
    spec = spec_for(
        repo,
        spec_script,
        variables=(("PIDS", str(pids)),),
        cancel_grace_s=GRACE,
        **overrides,
    )
    out: list[JobResult | None] = []
    thread = threading.Thread(target=lambda: out.append(run_with_file_log(spec, paths, reporter)))
    thread.start()
    return thread, reporter, out


def _escaped(pids: Path) -> list[int]:
    return [int(p) for p in pids.read_text().split()] if pids.exists() else []


@pytest.mark.parametrize("escape", ESCAPES.values(), ids=ESCAPES.keys())
def test_a_passing_script_leaves_nothing_behind(
    escape: str, repo: GitRepo, paths: RunnerPaths, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    script = f'{escape}\nwhile [ ! -s "$PIDS" ]; do sleep 0.01; done\necho done'
    t0 = time.monotonic()
    thread, reporter, out = _run_in_thread(script, repo, paths, pids)
    thread.join(GRACE + 10)
    assert not thread.is_alive(), "the job never ended: an escaped child held it"
    assert time.monotonic() - t0 < GRACE + 10
    [result] = out
    assert result is not None and result.outcome is Outcome.PASSED
    assert [r.outcome for r in reporter.results] == [Outcome.PASSED]
    [pid] = _escaped(pids)
    assert not alive(pid)
    assert re.search(r"stopped \d process\(es\) the script left running: .*sleep", log_of(paths))


@pytest.mark.parametrize("escape", ESCAPES.values(), ids=ESCAPES.keys())
def test_a_timeout_is_on_time_and_leaves_nothing_behind(
    escape: str, repo: GitRepo, paths: RunnerPaths, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    t0 = time.monotonic()
    thread, reporter, _ = _run_in_thread(f"{escape}\nsleep 300", repo, paths, pids, timeout_s=1)
    thread.join(1 + GRACE + 5)
    assert not thread.is_alive()
    assert time.monotonic() - t0 < 1 + GRACE + 5
    assert [(r.outcome, r.detail) for r in reporter.results] == [
        (Outcome.TIMEOUT, "timed out after 1s")
    ]
    assert [p for p in _escaped(pids) if alive(p)] == []


@pytest.mark.parametrize("escape", ESCAPES.values(), ids=ESCAPES.keys())
def test_a_cancel_leaves_nothing_behind_within_grace(
    escape: str, repo: GitRepo, paths: RunnerPaths, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    thread, reporter, _ = _run_in_thread(f"{escape}\nsleep 300", repo, paths, pids)
    wait_for(pids)
    t0 = time.monotonic()
    reporter.cancel.set()
    thread.join(GRACE + 5)
    assert not thread.is_alive()
    assert time.monotonic() - t0 < GRACE + 5
    assert [r.outcome for r in reporter.results] == [Outcome.CANCELLED]
    assert [p for p in _escaped(pids) if alive(p)] == []


def test_the_output_of_a_script_that_closed_it_still_counts_until_it_exits(
    repo: GitRepo, paths: RunnerPaths
) -> None:
    result = run_with_file_log(
        spec_for(repo, "echo before\nexec > /dev/null\nsleep 0.3\nexit 4"),
        paths,
        RecordingReporter(),
    )
    assert result is not None
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, 4)
    assert "before" in log_of(paths)


def test_members_are_found_by_their_marks_and_as_descendants(
    repo: GitRepo, paths: RunnerPaths, tmp_path: Path
) -> None:
    """Another job's processes, and processes of another installation, are not members."""
    pids = tmp_path / "pids"
    runner = RunnerIdentity("inst-a", "host", 1, 0)
    script = f"{ESCAPES['setsid']}\nsleep 300"
    thread, reporter, _ = _run_in_thread(script, repo, paths, pids)
    try:
        [escaped] = map(int, wait_for(pids).split())
        found = {p.pid for p in job_members(snapshot(), runner, 7, leader=None)}
        assert escaped not in found  # marked for another installation and runner
    finally:
        reporter.cancel.set()
        thread.join(GRACE + 5)


def test_a_cancelled_job_gets_its_grace_to_clean_up(repo: GitRepo, paths: RunnerPaths) -> None:
    """Only the processes there at the cancel get SIGTERM: the commands of a cleanup
    handler run undisturbed until the grace ends."""
    reporter = cancel_when_ready(spec_for(repo, CLEANS_UP_ON_TERM, cancel_grace_s=5), paths)
    assert [r.outcome for r in reporter.results] == [Outcome.CANCELLED]
    assert "cleaning up\ncleaned\n" in log_of(paths)


def test_a_process_that_keeps_re_forking_is_stopped_with_its_group(
    repo: GitRepo, paths: RunnerPaths, tmp_path: Path
) -> None:
    """Each generation forks and exits at once: a pid-by-pid scan never catches one, a
    signal to the whole process group does."""
    beats = tmp_path / "beats"
    loop = (
        f"$e=time+20; $l=0; while(time<$e){{ exit 0 if fork; "
        f'if (time>$l) {{ $l=time; open(F, ">>", "{beats}"); print F "$$\\n"; close F }} }}'
    )
    script = f"perl -e '{loop}' </dev/null >/dev/null 2>&1 &\nsleep 1"
    result = run_with_file_log(spec_for(repo, script, cancel_grace_s=1), paths, RecordingReporter())
    assert result is not None and result.outcome is Outcome.PASSED
    seen = beats.read_text()
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True)
    assert f'"{beats}"' not in ps.stdout, "the re-forking process outlived its job"
    time.sleep(1.5)  # long enough for a living loop to write its next beat
    assert beats.read_text() == seen


def test_a_runner_is_alive_only_as_the_process_that_started_as_it() -> None:
    me = os.getpid()
    started = start_time(me)
    assert runner_alive(f"host:{me}:{started}")
    # The same pid, taken by another process after the runner died.
    assert not runner_alive(f"host:{me}:{started + 1}")
    assert runner_alive(f"host:{me}")  # the id of a runner from before the start time
    assert not runner_alive("host:not-a-pid:1")


def test_a_scan_from_a_pid_reads_the_processes_started_since_and_no_older_one(
    tmp_path: Path,
) -> None:
    """What a job's end reads instead of every process (snapshot's pids_from)."""
    older = subprocess.Popen(["sleep", "30"])
    newer = subprocess.Popen(["sleep", "30"])
    try:
        if older.pid > newer.pid:
            pytest.skip("the pids came round between the two: nothing to tell apart")
        found = {p.pid for p in snapshot(pids_from=newer.pid)}
        assert newer.pid in found and older.pid not in found
        assert {older.pid, newer.pid} <= {p.pid for p in snapshot()}
        # Pids that came round (the last one given is below the start): every process.
        assert older.pid in {p.pid for p in snapshot(pids_from=2**22 + 1)}
    finally:
        for proc in (older, newer):
            proc.kill()
            proc.wait()
