"""The job runner on real git repositories and real processes."""

import threading
import time
from pathlib import Path

import pytest

from conveyor.domain.jobs import Outcome
from conveyor.domain.tasks import ResolvedRepo
from conveyor.executors.paths import RunnerPaths
from tests.conftest import GitRepo, RepoFactory, alive, git
from tests.executors.conftest import (
    RecordingReporter,
    log_of,
    run_claimed,
    run_with_file_log,
    spec_for,
    wait_for,
)


def test_a_passing_build_sees_its_variables_and_hands_on_outputs(
    repo: GitRepo, paths: RunnerPaths
) -> None:
    script = (
        'echo "commit $VOTING_APP_COMMIT branch $VOTING_APP_BRANCH pr $VOTING_APP_PR"\n'
        'echo "task $CONVEYOR_TASK_ID attempt $CONVEYOR_ATTEMPT ns $NAMESPACE"\n'
        "git -C voting-app rev-parse HEAD\n"
        'echo "IMAGE=registry/svc:$CONVEYOR_TASK_ID" >> "$CONVEYOR_OUTPUT"\n'
    )
    reporter = RecordingReporter()
    result = run_claimed(spec_for(repo, script, outputs=("IMAGE",)), paths, reporter)
    assert result.outcome is Outcome.PASSED
    assert result.outputs == {"IMAGE": "registry/svc:3"}
    assert reporter.results == [result]
    text = log_of(paths)
    sha = repo.head("main")
    assert f"commit {sha} branch main pr 0" in text
    assert "task 3 attempt 2 ns dev" in text
    assert f"\n{sha}\n" in text
    # The workspace is gone after the job.
    assert not (paths.workspaces / "7").exists()


def test_a_deploy_without_checkout_runs_in_an_empty_workspace_with_the_commit_variables(
    repo: GitRepo, paths: RunnerPaths
) -> None:
    script = 'echo "commit $VOTING_APP_COMMIT"\necho "entries: $(ls -A)"\n'
    spec = spec_for(repo, script, stage="deploy", checkout=False)
    result = run_claimed(spec, paths, RecordingReporter())
    assert result.outcome is Outcome.PASSED
    text = log_of(paths)
    assert f"commit {repo.head('main')}\nentries: .conveyor\n" in text  # the control dir only
    assert "no checkout: the deploy runs in an empty workspace (checkout: false)" in text
    assert "checking out" not in text


def test_the_server_environment_does_not_leak_into_jobs(
    repo: GitRepo, paths: RunnerPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", "postgresql://u:pw@db/x")
    result = run_claimed(
        spec_for(repo, 'echo "db=${CONVEYOR_DATABASE_URL:-unset}"'), paths, RecordingReporter()
    )
    assert result.outcome is Outcome.PASSED
    assert "db=unset" in log_of(paths)


@pytest.mark.parametrize(
    ("script", "code"), [("exit 3", 3), ("false | true", 1), ("false\necho after", 1)]
)
def test_a_failing_script_fails_the_job(
    repo: GitRepo, paths: RunnerPaths, script: str, code: int
) -> None:
    result = run_claimed(spec_for(repo, script), paths, RecordingReporter())
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, code)
    assert "after" not in log_of(paths).split("[conveyor] checking out")[1]


def test_timeout_stops_the_whole_process_tree(
    repo: GitRepo, paths: RunnerPaths, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    script = (
        f"sleep 1000 & echo $! >> {pids}\n"
        f"(trap '' TERM; sleep 1000) & echo $! >> {pids}\n"
        f"echo $$ >> {pids}\nsleep 1000"
    )
    t0 = time.monotonic()
    result = run_claimed(
        spec_for(repo, script, timeout_s=1, cancel_grace_s=1), paths, RecordingReporter()
    )
    assert result.outcome is Outcome.TIMEOUT
    assert time.monotonic() - t0 < 1 + 1 + 5
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 3
    assert [p for p in started if alive(p)] == []
    assert "timed out after 1s" in log_of(paths)


def test_cancel_stops_every_process_within_grace(
    repo: GitRepo, paths: RunnerPaths, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    # One child ignores SIGTERM: only SIGKILL after the grace period ends it.
    script = f"(trap '' TERM; sleep 1000) & echo $! >> {pids}\nsleep 1000 & echo $! >> {pids}\nwait"
    reporter = RecordingReporter()
    spec = spec_for(repo, script, cancel_grace_s=1)
    runner = threading.Thread(target=run_with_file_log, args=(spec, paths, reporter))
    runner.start()
    wait_for(pids)
    while len(pids.read_text().split()) < 2:
        time.sleep(0.01)
    t0 = time.monotonic()
    reporter.cancel.set()
    runner.join(timeout=1 + 5)
    assert not runner.is_alive()
    assert time.monotonic() - t0 < 1 + 5
    assert [r.outcome for r in reporter.results] == [Outcome.CANCELLED]
    assert [p for p in map(int, pids.read_text().split()) if alive(p)] == []


def test_children_left_behind_by_a_passing_script_are_stopped(
    repo: GitRepo, paths: RunnerPaths, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    result = run_claimed(
        spec_for(repo, f"sleep 1000 & echo $! > {pid_file}\nexit 0"), paths, RecordingReporter()
    )
    assert result.outcome is Outcome.PASSED
    assert not alive(int(pid_file.read_text()))


def test_log_is_capped_and_secrets_are_masked(repo: GitRepo, paths: RunnerPaths) -> None:
    script = (
        'echo "token is $DEPLOY_TOKEN"\nhead -c 300000 /dev/zero | tr "\\0" "x"\necho tail-marker'
    )
    spec = spec_for(repo, script, secrets={"DEPLOY_TOKEN": "s3cr3t-value"}, log_max_bytes=100_000)
    assert "s3cr3t" not in repr(spec)
    result = run_claimed(spec, paths, RecordingReporter())
    assert result.outcome is Outcome.PASSED
    data = paths.log(7).read_bytes()
    assert b"s3cr3t-value" not in data
    assert b"token is ***" in data
    assert b"[conveyor] log truncated at 100000 bytes" in data
    assert b"tail-marker" not in data
    assert len(data) < 100_000 + 500


def test_a_multi_line_secret_is_masked_whole_and_line_by_line(
    repo: GitRepo, paths: RunnerPaths
) -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----"
    script = 'echo "[$KEY]"\necho "$KEY" | sed -n 2p\necho "$KEY" | tr "\\n" " "; echo'
    result = run_claimed(spec_for(repo, script, secrets={"KEY": key}), paths, RecordingReporter())
    assert result.outcome is Outcome.PASSED
    text = log_of(paths)
    assert "MIIEvQIBADANBgkqhkiG9w0B" not in text and "BEGIN KEY" not in text
    assert "[***]\n***\n*** *** ***" in text


@pytest.mark.parametrize("before", [65530, 65525, 65536 - 3, 65536 * 2 - 7])
def test_a_secret_straddling_a_read_boundary_is_masked(
    repo: GitRepo, paths: RunnerPaths, before: int
) -> None:
    script = f"printf 'x%.0s' $(seq 1 {before}); echo \"$SECRET\"; echo done"
    spec = spec_for(repo, script, secrets={"SECRET": "straddling-secret-value"})
    result = run_claimed(spec, paths, RecordingReporter())
    assert result.outcome is Outcome.PASSED
    data = paths.log(7).read_bytes()
    assert b"straddling" not in data and b"secret-value" not in data
    assert b"x" * before + b"***\ndone\n" in data


def test_every_known_secret_is_masked_not_only_the_jobs_own(
    repo: GitRepo, paths: RunnerPaths
) -> None:
    spec = spec_for(repo, "printf 'prod-%s-xyz\\n' secret", masked=("prod-secret-xyz",))
    assert "prod-secret" not in repr(spec) and "prod-secret" not in str(spec.to_json())
    assert run_claimed(spec, paths, RecordingReporter()).outcome is Outcome.PASSED
    assert "prod-secret-xyz" not in log_of(paths)
    assert "\n***\n" in log_of(paths)


def test_merge_request_is_merged_onto_its_branch(
    make_repo: RepoFactory, paths: RunnerPaths
) -> None:
    repo = make_repo("voting-app")
    base = repo.head("main")
    (repo.path / "feature.txt").write_text("feature\n")
    git(repo.path, "checkout", "-q", "--detach")
    git(repo.path, "add", "feature.txt")
    git(repo.path, "commit", "-q", "-m", "feature")
    mr = git(repo.path, "rev-parse", "HEAD")
    git(repo.path, "update-ref", "refs/merge-requests/5/head", mr)
    git(repo.path, "checkout", "-q", "main")
    main_after = repo.commit("main moved on")
    assert main_after != base
    repos = (ResolvedRepo("voting-app", repo.url, "main", 5, mr, main_after),)
    script = "test -f voting-app/feature.txt\ngit -C voting-app rev-parse HEAD^1 HEAD^2"
    result = run_claimed(spec_for(repo, script, repos=repos), paths, RecordingReporter())
    assert result.outcome is Outcome.PASSED, log_of(paths)
    assert f"{main_after}\n{mr}" in log_of(paths)


def test_a_merge_conflict_fails_the_job_with_a_clear_line(
    make_repo: RepoFactory, paths: RunnerPaths
) -> None:
    repo = make_repo("voting-app")
    mr = repo.merge_request(9, "mr edits file.txt")
    main = repo.commit("main edits file.txt too")
    repos = (ResolvedRepo("voting-app", repo.url, "main", 9, mr, main),)
    result = run_claimed(
        spec_for(repo, "echo should-not-run", repos=repos), paths, RecordingReporter()
    )
    assert result.outcome is Outcome.FAILED
    assert "merge conflict" in result.detail and "file.txt" in result.detail
    assert "should-not-run" not in log_of(paths).replace("echo should-not-run", "")


def test_a_commit_that_vanished_fails_clearly(repo: GitRepo, paths: RunnerPaths) -> None:
    repos = (ResolvedRepo("voting-app", repo.url, "main", 0, "0" * 40),)
    result = run_claimed(spec_for(repo, "true", repos=repos), paths, RecordingReporter())
    assert result.outcome is Outcome.FAILED
    assert f"commit {'0' * 40} is no longer in" in result.detail


def test_the_mirror_fetches_new_commits_for_later_jobs(repo: GitRepo, paths: RunnerPaths) -> None:
    assert run_claimed(spec_for(repo, "true"), paths, RecordingReporter()).outcome is Outcome.PASSED
    newer = repo.commit("newer")
    repos = (ResolvedRepo("voting-app", repo.url, "main", 0, newer),)
    result = run_claimed(
        spec_for(repo, "git -C voting-app rev-parse HEAD", repos=repos, job_id=8),
        paths,
        RecordingReporter(),
    )
    assert result.outcome is Outcome.PASSED
    assert newer in log_of(paths, 8)


def test_a_job_claimed_by_another_runner_does_nothing(
    repo: GitRepo, paths: RunnerPaths, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    reporter = RecordingReporter()
    reporter.claimable = False
    assert run_with_file_log(spec_for(repo, f"touch {marker}"), paths, reporter) is None
    assert not marker.exists()
    assert reporter.results == []
    assert not paths.log(7).exists()
