"""The workspaces directory asks ext2/3/4 to spread its subdirectories apart."""

import array
import errno
import fcntl
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from conveyor.domain.jobs import Outcome
from conveyor.executors import spread_dirs
from conveyor.executors.paths import RunnerPaths
from conveyor.executors.spread_dirs import (
    FS_IOC_GETFLAGS,
    FS_IOC_SETFLAGS,
    FS_TOPDIR_FL,
    spread_subdirectories,
)
from tests.conftest import GitRepo
from tests.executors.conftest import RecordingReporter, run_claimed, spec_for

FS_NODUMP_FL = 0x00000040  # `chattr +d`: an attribute any owner may set


def flags_of(directory: Path) -> int:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        return flags[0]
    finally:
        os.close(fd)


def set_flags(directory: Path, value: int) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, array.array("i", [value]), True)
    finally:
        os.close(fd)


@pytest.fixture
def ext_fs(tmp_path: Path) -> Path:
    """tmp_path, where its file system takes the attribute (ext2/3/4, as in CI)."""
    if not spread_subdirectories(tmp_path / "probe"):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tmp_path}: CI's temp dir is on ext4, which has the T attribute")
        pytest.skip(f"{tmp_path}: this file system has no T attribute (not ext2/3/4)")
    return tmp_path


def test_a_runner_marks_the_workspaces_directory_at_its_first_job(
    repo: GitRepo, paths: RunnerPaths, ext_fs: Path
) -> None:
    result = run_claimed(spec_for(repo, "true"), paths, RecordingReporter())
    assert result.outcome is Outcome.PASSED
    assert flags_of(paths.workspaces) & FS_TOPDIR_FL


def test_marking_keeps_the_directorys_other_attributes(ext_fs: Path) -> None:
    directory = ext_fs / "workspaces"
    directory.mkdir()
    set_flags(directory, flags_of(directory) | FS_NODUMP_FL)
    before = flags_of(directory)
    assert spread_subdirectories(directory)
    assert flags_of(directory) == before | FS_TOPDIR_FL
    assert spread_subdirectories(directory)  # again: nothing more changes
    assert flags_of(directory) == before | FS_TOPDIR_FL


@pytest.mark.parametrize("refusal", [errno.ENOTTY, errno.EOPNOTSUPP, errno.EPERM])
def test_a_file_system_that_refuses_the_attribute_costs_a_job_nothing(
    repo: GitRepo, paths: RunnerPaths, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    """Not ext2/3/4 (ENOTTY, EOPNOTSUPP), or a directory that is not the runner's."""

    def refuse(*args: object) -> None:
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(spread_dirs, "fcntl", SimpleNamespace(ioctl=refuse))
    assert not spread_subdirectories(paths.workspaces)
    assert paths.workspaces.is_dir()
    result = run_claimed(spec_for(repo, "true"), paths, RecordingReporter())
    assert result.outcome is Outcome.PASSED
