"""Reading a local repository's refs from its files answers what `git ls-remote` does."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from conveyor.scm.git import GitCli
from conveyor.scm.local_refs import local_git_dir, read_local_refs
from tests.conftest import GitRepo, RepoFactory, git

WANTED = [
    "refs/heads/main",
    "refs/heads/team/main",
    "refs/heads/team",
    "refs/heads/absent",
    "refs/merge-requests/7/head",
]


def ls_remote(url: str, refs: list[str]) -> dict[str, str]:
    out = subprocess.run(
        ["git", "ls-remote", "--", url, *refs], capture_output=True, text=True, check=True
    ).stdout
    lines = (line.split("\t") for line in out.splitlines())
    return {name: sha for sha, name in lines if name in refs}


@pytest.fixture
def repo(make_repo: RepoFactory) -> GitRepo:
    repo = make_repo("app")
    repo.commit("team work", branch="team/main")
    git(repo.path, "checkout", "-q", "main")
    repo.merge_request(7, "mr seven")
    return repo


def test_loose_refs_read_as_git_reads_them(repo: GitRepo) -> None:
    found = read_local_refs(repo.url, WANTED)
    assert found == ls_remote(repo.url, WANTED)
    assert set(found or {}) == {"refs/heads/main", "refs/heads/team/main",
                                "refs/merge-requests/7/head"}  # fmt: skip


def test_packed_refs_and_a_loose_ref_newer_than_its_packed_copy(repo: GitRepo) -> None:
    git(repo.path, "pack-refs", "--all")
    assert not (repo.path / ".git/refs/heads/main").exists()
    assert read_local_refs(repo.url, WANTED) == ls_remote(repo.url, WANTED)
    newer = repo.commit("after packing")  # loose again, while packed-refs keeps the old id
    found = read_local_refs(repo.url, WANTED) or {}
    assert found["refs/heads/main"] == newer
    assert found == ls_remote(repo.url, WANTED)


def test_a_bare_repository_and_a_file_url(repo: GitRepo, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", repo.url, str(bare)], check=True)
    for url in (str(bare), f"file://{bare}"):
        assert read_local_refs(url, WANTED) == ls_remote(url, WANTED)
    assert read_local_refs(str(bare), WANTED) is not None


def test_what_the_reader_does_not_understand_is_left_to_git(repo: GitRepo, tmp_path: Path) -> None:
    assert read_local_refs("https://gitlab.example.com/a.git", WANTED) is None
    assert read_local_refs("relative/path", WANTED) is None
    assert read_local_refs(str(tmp_path / "nope"), WANTED) is None
    assert read_local_refs(repo.url, ["refs/heads/../../config"]) is None
    # A symbolic ref: git follows it, this reader does not.
    git(repo.path, "symbolic-ref", "refs/heads/alias", "refs/heads/main")
    assert read_local_refs(repo.url, ["refs/heads/alias"]) is None
    assert GitCli().resolve(repo.url, ["refs/heads/alias"]) == {
        "refs/heads/alias": repo.head("main")
    }
    # A linked worktree's git dir, and a repository with extensions.
    worktree = tmp_path / "wt"
    git(repo.path, "worktree", "add", "-q", str(worktree), "team/main")
    assert local_git_dir(str(worktree)) is None
    git(repo.path, "config", "extensions.worktreeConfig", "true")
    assert local_git_dir(repo.url) is None
    assert GitCli().resolve(repo.url, ["refs/heads/main"]) == {"refs/heads/main": repo.head("main")}


def test_symlinks_and_hidden_refs_are_left_to_git(repo: GitRepo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("1" * 40 + "\n")
    (repo.path / ".git/refs/heads/link").symlink_to(outside)
    assert read_local_refs(repo.url, ["refs/heads/link"]) is None
    # git itself answers for such a ref (here: it follows the link).
    assert read_local_refs(repo.url, ["refs/heads/main"]) is not None
    # A symlinked directory on the way is followed, as git follows it.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere/main").write_text(repo.head("main") + "\n")
    (repo.path / ".git/refs/heads/shared").symlink_to(tmp_path / "elsewhere")
    wanted = ["refs/heads/shared/main"]
    assert read_local_refs(repo.url, wanted) == ls_remote(repo.url, wanted) != {}
    git(repo.path, "config", "uploadpack.hideRefs", "refs/merge-requests")
    assert local_git_dir(repo.url) is None
    assert GitCli().resolve(repo.url, ["refs/merge-requests/7/head"]) == {}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a repository away")
def test_a_repository_of_another_owner_is_left_to_git(repo: GitRepo) -> None:
    os.chown(repo.path / ".git", 65534, 65534)
    assert local_git_dir(repo.url) is None


def _settle(repo: GitRepo) -> None:
    """Date the git directory and its config an hour back, as a repository nobody has
    touched lately: only such a layout is remembered between reads."""
    an_hour_ago = time.time() - 3600
    for path in (repo.path / ".git/config", repo.path / ".git"):
        os.utime(path, (an_hour_ago, an_hour_ago))


def test_a_remembered_layout_is_checked_again_when_its_config_changes(repo: GitRepo) -> None:
    _settle(repo)
    assert read_local_refs(repo.url, ["refs/merge-requests/7/head"]) != {}
    # Edited in place (same file, no rename): its size and time tell.
    with (repo.path / ".git/config").open("a") as config:
        config.write("[uploadpack]\n\thideRefs = refs/merge-requests\n")
    assert read_local_refs(repo.url, ["refs/merge-requests/7/head"]) is None
    assert GitCli().resolve(repo.url, ["refs/merge-requests/7/head"]) == {}


def test_a_remembered_layout_is_checked_again_when_its_git_directory_changes(
    repo: GitRepo,
) -> None:
    _settle(repo)
    assert read_local_refs(repo.url, ["refs/heads/main"]) is not None
    (repo.path / ".git/reftable").mkdir()  # as a switch to the reftable format leaves it
    assert read_local_refs(repo.url, ["refs/heads/main"]) is None


def test_a_ref_moved_after_its_layout_was_remembered_reads_anew(repo: GitRepo) -> None:
    _settle(repo)
    old = repo.head("main")
    assert read_local_refs(repo.url, ["refs/heads/main"]) == {"refs/heads/main": old}
    newer = repo.commit("later")
    assert newer != old
    assert read_local_refs(repo.url, ["refs/heads/main"]) == {"refs/heads/main": newer}


def test_a_repository_behind_a_repointed_symlink_is_read_where_it_now_is(
    repo: GitRepo, tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(repo.path)
    _settle(repo)
    head = repo.head("main")
    assert read_local_refs(str(link), ["refs/heads/main"]) == {"refs/heads/main": head}
    # Moved (its git directory keeps its inode and times) and the link repointed.
    moved = tmp_path / "moved"
    repo.path.rename(moved)
    link.unlink()
    link.symlink_to(moved)
    assert read_local_refs(str(link), ["refs/heads/main"]) == {"refs/heads/main": head}
