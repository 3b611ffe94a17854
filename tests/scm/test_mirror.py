"""Mirrors and checkouts against real repositories: what a job's workspace holds, and
what it costs in processes (the fixed cost of every job, issue 12)."""

import subprocess
from pathlib import Path
from typing import Any

import pytest

from conveyor.scm.mirror import CheckoutError, MirrorCache
from tests.conftest import RepoFactory, git


def counted(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every process the mirror module starts, still started for real."""
    started: list[list[str]] = []
    real = subprocess.run

    def run(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        started.append(argv)
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)  # what the mirror module calls
    return started


def test_a_checkout_is_one_git_process_once_the_mirror_holds_the_commit(
    make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_repo("app")
    sha = app.commit("second")
    cache = MirrorCache(tmp_path / "mirrors")
    mirror = cache.ensure(app.url, [sha])  # the first job clones the mirror
    started = counted(monkeypatch)
    assert cache.ensure(app.url, [sha]) == mirror
    cache.checkout(mirror, tmp_path / "ws" / "app", sha)
    assert [argv[:2] for argv in started] == [["git", "read-tree"]]
    workspace = tmp_path / "ws" / "app"
    assert git(workspace, "rev-parse", "HEAD") == sha
    assert (workspace / "file.txt").read_text().startswith("second\n")
    assert git(workspace, "status", "--porcelain") == ""  # a clean, valid repository
    assert git(workspace, "log", "--format=%s", "-1") == "second"


def test_a_checkout_makes_only_what_git_needs_in_the_workspace_repository(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    """Each file made is an inode created; under workspace churn they are a small
    checkout's dearest part (issue 12). No config, no reflog, HEAD written once."""
    app = make_repo("app")
    sha = app.head("main")
    cache = MirrorCache(tmp_path / "mirrors")
    workspace = tmp_path / "ws" / "app"
    cache.checkout(cache.ensure(app.url, [sha]), workspace, sha)
    made = sorted(str(p.relative_to(workspace / ".git")) for p in (workspace / ".git").rglob("*"))
    assert made == ["HEAD", "index", "objects", "objects/info", "objects/info/alternates", "refs"]
    assert (workspace / ".git" / "HEAD").read_text() == f"{sha}\n"
    assert git(workspace, "rev-parse", "--is-bare-repository") == "false"


def test_a_checkout_applies_the_repositorys_attributes(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    app = make_repo("app")
    (app.path / ".gitattributes").write_text("*.bat text eol=crlf\nversion.txt ident\n")
    (app.path / "run.bat").write_text("echo one\necho two\n")
    (app.path / "version.txt").write_text("$Id$\n")
    git(app.path, "add", ".gitattributes", "run.bat", "version.txt")
    git(app.path, "commit", "-q", "-m", "attributes")
    sha = app.head("main")
    cache = MirrorCache(tmp_path / "mirrors")
    workspace = tmp_path / "ws" / "app"
    cache.checkout(cache.ensure(app.url, [sha]), workspace, sha)
    assert (workspace / "run.bat").read_bytes() == b"echo one\r\necho two\r\n"
    blob = git(workspace, "rev-parse", "HEAD:version.txt")
    assert (workspace / "version.txt").read_text() == f"$Id: {blob} $\n"
    assert git(workspace, "status", "--porcelain") == ""


def test_a_merge_request_is_merged_onto_its_target_in_the_workspace(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    app = make_repo("app")
    base = app.head("main")
    head = app.merge_request(3, "feature")
    cache = MirrorCache(tmp_path / "mirrors")
    mirror = cache.ensure(app.url, [base, head])
    workspace = tmp_path / "ws" / "app"
    cache.checkout(mirror, workspace, base, merge=head)
    parents = git(workspace, "rev-list", "--parents", "-n", "1", "HEAD").split()[1:]
    assert parents == [base, head]


def test_a_commit_not_in_the_mirror_is_a_clear_error(
    make_repo: RepoFactory, tmp_path: Path
) -> None:
    app = make_repo("app")
    cache = MirrorCache(tmp_path / "mirrors")
    mirror = cache.ensure(app.url, [app.head("main")])
    with pytest.raises(CheckoutError, match=r"cannot check out 0{40}"):
        cache.checkout(mirror, tmp_path / "ws" / "app", "0" * 40)
