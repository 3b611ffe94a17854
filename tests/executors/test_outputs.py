"""A build's $CONVEYOR_OUTPUT is the job's file: whatever the job made of it, the runner
reads only a regular file of its own, never a host file, never waits on it, never
echoes what it ignores, and hands on only the declared names."""

import os
import threading
from pathlib import Path

import pytest

from conveyor.domain.jobs import JobResult, Outcome
from conveyor.executors.outputs import MAX_OUTPUT_BYTES
from conveyor.executors.paths import RunnerPaths
from tests.conftest import GitRepo
from tests.executors.conftest import RecordingReporter, log_of, run_with_file_log, spec_for

SECRET = "a-secret-of-the-host-0123456789"


def run_build(repo: GitRepo, paths: RunnerPaths, script: str) -> tuple[JobResult, str]:
    spec = spec_for(
        repo, script, outputs=("IMAGE", "TAG"), secrets={"TOKEN": "masked-token-0123456789"}
    )
    out: list[JobResult | None] = []
    runner = threading.Thread(
        target=lambda: out.append(run_with_file_log(spec, paths, RecordingReporter()))
    )
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), "the runner hung on $CONVEYOR_OUTPUT"
    [result] = out
    assert result is not None
    return result, log_of(paths)


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    path = tmp_path / "host-secret"
    path.write_text(f"IMAGE={SECRET}\n{SECRET}\n")
    path.chmod(0o600)
    return path


def test_only_declared_names_with_sound_values_are_handed_on(
    repo: GitRepo, paths: RunnerPaths
) -> None:
    script = (
        'printf "IMAGE=reg/app:1\\nTAR_OPTIONS=--checkpoint-action=exec=id\\nMAKEFLAGS=x\\n'
        'TAG=bad\\033[2J\\nnot a pair $TOKEN\\nPASSWORD_$TOKEN=1\\n" > "$CONVEYOR_OUTPUT"'
    )
    result, log = run_build(repo, paths, script)
    assert result.outputs == {"IMAGE": "reg/app:1"}
    assert "line 2 of $CONVEYOR_OUTPUT: TAR_OPTIONS is not a declared output" in log
    assert "line 3 of $CONVEYOR_OUTPUT: MAKEFLAGS is not a declared output" in log
    assert "line 4 of $CONVEYOR_OUTPUT: the value of TAG must not hold control characters" in log
    assert "line 5 of $CONVEYOR_OUTPUT: not KEY=value" in log
    # An ignored line is named, never echoed: its value may be a secret.
    assert "masked-token" not in log and "checkpoint" not in log


def test_a_symlink_to_a_host_file_is_not_read(
    repo: GitRepo, paths: RunnerPaths, host_file: Path
) -> None:
    result, log = run_build(repo, paths, f'ln -sf {host_file} "$CONVEYOR_OUTPUT"')
    assert result.outcome is Outcome.PASSED
    assert result.outputs == {}
    assert SECRET not in log
    assert "ignored $CONVEYOR_OUTPUT: it cannot be opened safely" in log


def test_a_replaced_control_directory_is_not_followed(
    repo: GitRepo, paths: RunnerPaths, host_file: Path
) -> None:
    script = (
        f"mv .conveyor .moved && mkdir .conveyor && ln -s {host_file} .conveyor/output\n"
        f'ln -sfn {host_file.parent} .conveyor2 && echo "IMAGE=own" >> .moved/output'
    )
    result, log = run_build(repo, paths, script)
    # The runner reads the directory it made, wherever the job moved it.
    assert result.outputs == {"IMAGE": "own"}
    assert SECRET not in log


def test_a_named_pipe_does_not_hang_the_runner(repo: GitRepo, paths: RunnerPaths) -> None:
    result, log = run_build(repo, paths, 'rm -f "$CONVEYOR_OUTPUT"; mkfifo "$CONVEYOR_OUTPUT"')
    assert result.outcome is Outcome.PASSED
    assert "ignored $CONVEYOR_OUTPUT: it is not a regular file" in log


def test_a_huge_file_is_not_read(repo: GitRepo, paths: RunnerPaths) -> None:
    result, log = run_build(repo, paths, 'truncate -s 400M "$CONVEYOR_OUTPUT"')
    assert result.outputs == {}
    assert f"ignored $CONVEYOR_OUTPUT: it holds more than {MAX_OUTPUT_BYTES} bytes" in log


@pytest.mark.skipif(os.geteuid() != 0, reason="a device node needs root")
def test_a_device_is_not_read(repo: GitRepo, paths: RunnerPaths) -> None:
    result, log = run_build(repo, paths, 'rm -f "$CONVEYOR_OUTPUT"; mknod "$CONVEYOR_OUTPUT" c 1 5')
    assert "ignored $CONVEYOR_OUTPUT: it is not a regular file" in log
    assert result.outputs == {}
