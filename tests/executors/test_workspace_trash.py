"""Finished workspaces leave their path at once and are deleted off the job's path."""

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conveyor.executors.workspace_trash import TRASH, WorkspaceTrash


def workspace(root: Path, name: str) -> Path:
    path = root / name
    (path / "app" / ".git" / "refs").mkdir(parents=True)
    (path / "app" / "README").write_text("hello\n")
    (path / "app" / "link").symlink_to("/etc/passwd")
    return path


def test_a_discarded_workspace_is_gone_at_once_and_its_files_soon_after(tmp_path: Path) -> None:
    trash = WorkspaceTrash()
    first, second = workspace(tmp_path, "7"), workspace(tmp_path, "8")
    trash.discard(first)
    trash.discard(second)
    assert not first.exists() and not second.exists()
    assert trash.drain(30)
    assert list((tmp_path / TRASH).iterdir()) == []
    assert Path("/etc/passwd").exists()  # a symlink in a workspace is removed, not followed


def test_a_workspace_that_is_not_there_is_nothing_to_discard(tmp_path: Path) -> None:
    trash = WorkspaceTrash()
    trash.discard(tmp_path / "missing")
    trash.discard(tmp_path / "no-such-dir" / "9")
    assert not (tmp_path / TRASH).exists()
    assert trash.drain(1)


def test_what_a_crash_left_in_the_trash_goes_with_the_next_discard(tmp_path: Path) -> None:
    (tmp_path / TRASH).mkdir()
    left = workspace(tmp_path / TRASH, "3.0123456789ab")
    trash = WorkspaceTrash()
    trash.discard(workspace(tmp_path, "4"))
    assert trash.drain(30)
    assert not left.exists()
    assert list((tmp_path / TRASH).iterdir()) == []


def test_without_rm_the_files_are_deleted_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = subprocess.run

    def no_rm(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        if argv[0] != "rm" or not all(Path(p).is_relative_to(tmp_path) for p in argv[3:]):
            return real(argv, **kwargs)  # another thread's: not this test's to refuse
        raise FileNotFoundError("rm")

    monkeypatch.setattr(subprocess, "run", no_rm)
    trash = WorkspaceTrash()
    trash.discard(workspace(tmp_path, "5"))
    assert trash.drain(30)
    assert list((tmp_path / TRASH).iterdir()) == []


def test_a_forked_worker_empties_its_own_trash(tmp_path: Path) -> None:
    trash = WorkspaceTrash()
    trash.discard(workspace(tmp_path, "1"))
    assert trash.drain(30)
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread is not there; a new one must start
        ok = False
        try:
            trash.discard(workspace(tmp_path, "2"))
            ok = trash.drain(30) and not list((tmp_path / TRASH).iterdir())
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_trash_that_is_a_symlink_is_never_emptied(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    workspace(elsewhere, "precious")
    (tmp_path / "workspaces").mkdir()
    (tmp_path / "workspaces" / TRASH).symlink_to(elsewhere)
    trash = WorkspaceTrash()
    trash.discard(workspace(tmp_path / "workspaces", "6"))
    assert trash.drain(30)
    assert (elsewhere / "precious" / "app" / "README").exists()


def test_what_rm_cannot_delete_is_logged_once_and_not_walked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    given: list[list[str]] = []
    real = subprocess.run

    def failing_rm(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        if not all(Path(p).is_relative_to(tmp_path) for p in argv[3:]):
            # Another trash's (a job's of an earlier test, still draining in this
            # process): not this one's to count.
            return real(argv, **kwargs)
        given.append(argv[3:])
        return subprocess.CompletedProcess(
            argv, 1, b"", b"rm: cannot remove 'x': Permission denied\n"
        )

    monkeypatch.setattr(subprocess, "run", failing_rm)
    trash = WorkspaceTrash()
    trash.discard(workspace(tmp_path, "7"))
    assert trash.drain(30)
    assert "could not delete 1 finished workspace(s)" in caplog.text
    assert "Permission denied" in caplog.text
    trash.discard(workspace(tmp_path, "8"))
    assert trash.drain(30)
    assert [len(paths) for paths in given] == [1, 1]
    assert Path(given[1][0]).name.startswith("8.")
