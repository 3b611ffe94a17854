"""GitCli against real repositories."""

from pathlib import Path

import pytest

from conveyor.domain.errors import UpstreamError
from conveyor.scm.git import GitCli, mask_url
from tests.conftest import RepoFactory, git


def test_resolves_exact_ref_names_only(make_repo: RepoFactory) -> None:
    repo = make_repo("app")
    main = repo.head("main")
    # ls-remote matches pattern tails: refs/heads/team/main must not answer for main.
    other = repo.commit("team work", branch="team/main")
    git(repo.path, "tag", "main", other)
    found = GitCli().resolve(repo.url, ["refs/heads/main", "refs/heads/absent"])
    assert found == {"refs/heads/main": main}


def test_resolves_merge_request_heads(make_repo: RepoFactory) -> None:
    repo = make_repo("app")
    mr = repo.merge_request(12, "mr twelve")
    found = GitCli().resolve(
        repo.url, ["refs/merge-requests/12/head", "refs/merge-requests/1/head"]
    )
    assert found == {"refs/merge-requests/12/head": mr}


def test_a_missing_repository_says_why(tmp_path: Path) -> None:
    with pytest.raises(UpstreamError, match="does not appear to be a git repository"):
        GitCli().resolve(str(tmp_path / "nope"), ["refs/heads/main"])


def test_command_transports_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(UpstreamError):
        GitCli().resolve(f"ext::sh -c touch% {marker}", ["refs/heads/main"])
    assert not marker.exists()


def test_a_url_that_looks_like_an_option_is_not_one(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(UpstreamError):
        GitCli().resolve(f"--upload-pack=touch {marker}", ["refs/heads/main"])
    assert not marker.exists()


def test_credentials_in_urls_are_masked() -> None:
    assert (
        mask_url("https://bot:s3cret@gitlab.example.com/a.git")
        == "https://***@gitlab.example.com/a.git"
    )
    assert mask_url("/srv/git/a.git") == "/srv/git/a.git"
    with pytest.raises(UpstreamError) as info:
        GitCli(timeout_s=5).resolve("https://bot:s3cret@127.0.0.1:9/a.git", ["refs/heads/main"])
    assert "s3cret" not in str(info.value)
    assert "***@127.0.0.1" in str(info.value)


def test_refs_past_the_argument_limit_are_an_upstream_error_not_a_crash(
    make_repo: RepoFactory,
) -> None:
    repo = make_repo("app")
    with pytest.raises(UpstreamError, match="could not start: Argument list too long"):
        GitCli().resolve(repo.url, ["refs/heads/" + "a" * 200_000])
