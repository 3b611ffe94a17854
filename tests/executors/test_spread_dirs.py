"""The workspaces directory asks ext2/3/4 to spread its subdirectories apart."""

import array
import fcntl
import os
from pathlib import Path

import pytest

from conveyor.domain.jobs import Outcome
from conveyor.executors.paths import RunnerPaths
from conveyor.executors.spread_dirs import (
    FS_IOC_GETFLAGS,
    FS_TOPDIR_FL,
    spread_subdirectories,
)
from tests.conftest import GitRepo
from tests.executors.conftest import RecordingReporter, run_claimed, spec_for


def flags_of(directory: Path) -> int | None:
    """The directory's attributes as `lsattr` reads them, or None where there are none."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        return flags[0]
    except OSError:
        return None
    finally:
        os.close(fd)


@pytest.fixture
def ext_fs(tmp_path: Path) -> Path:
    """tmp_path, where its file system has ext2/3/4's attributes (this project's CI)."""
    if flags_of(tmp_path) is None:
        pytest.skip(f"{tmp_path}: this file system has no file attributes")
    return tmp_path


def test_a_runner_marks_the_workspaces_directory_at_its_first_job(
    repo: GitRepo, paths: RunnerPaths, ext_fs: Path
) -> None:
    result = run_claimed(spec_for(repo, "true"), paths, RecordingReporter())
    assert result.outcome is Outcome.PASSED
    flags = flags_of(paths.workspaces)  # under ext_fs
    assert flags is not None and flags & FS_TOPDIR_FL


def test_marking_keeps_the_other_attributes_and_can_be_repeated(ext_fs: Path) -> None:
    directory = ext_fs / "workspaces"
    assert spread_subdirectories(directory)
    before = flags_of(directory)
    assert before is not None and before & FS_TOPDIR_FL
    assert spread_subdirectories(directory)
    assert flags_of(directory) == before


def test_a_file_system_without_the_attribute_changes_nothing() -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("no writable /dev/shm (tmpfs) here")
    directory = shm / f"conveyor-test-{os.getpid()}"
    try:
        # tmpfs keeps a few attributes, not this one: the directory is still made.
        assert not spread_subdirectories(directory)
        assert directory.is_dir()
    finally:
        directory.rmdir()
