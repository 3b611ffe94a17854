"""Branch names and commit ids, checked against real git where git has a say."""

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.domain.refs import branch_name_problem, is_commit_prefix, is_full_commit


def git_accepts(branch: str) -> bool:
    return (
        subprocess.run(
            ["git", "check-ref-format", f"refs/heads/{branch}"], capture_output=True, check=False
        ).returncode
        == 0
    )


ODD = st.sampled_from(list("/.-@{}~^:?*[\\ ;&|$`<>()'\"#!\t\x7fü"))
NAMES = st.lists(st.one_of(ODD, st.sampled_from(list("ab9_")), st.just(".lock")), max_size=12).map(
    "".join
)


@settings(max_examples=300, deadline=None)
@given(NAMES)
def test_never_accepts_a_name_git_rejects(name: str) -> None:
    if "\x00" in name:
        return
    if branch_name_problem(name) is None:
        assert git_accepts(name), name


@pytest.mark.parametrize(
    "name", ["main", "master", "feature/x", "release-1.2", "fix#123", "user@host", "v1.0_rc+1", "ü"]
)
def test_ordinary_names_are_accepted(name: str) -> None:
    assert branch_name_problem(name) is None
    assert git_accepts(name)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        ("--upload-pack=x", "must not start with '-'"),
        ("a;b", "must not contain ';'"),
        ("$(id)", "must not contain '$', '(', ')'"),
        ("../x", "must not contain '..' or '@{'"),
        ("a/.x", "no part may start with '.' or end with '.lock'"),
        ("x.lock", "no part may start with '.' or end with '.lock'"),
        ("a//b", "must not start or end with '/' or contain '//'"),
        ("x.", "must not end with '.'"),
        ("@", "must not be '@'"),
        ("a\tb", "must not contain '\\t'"),
        # Accepted by git, but a C1 escape or a line separator would forge log lines.
        ("c1\x9b2J", "must not contain '\\x9b'"),
        ("a\u2028b", "must not contain '\\u2028'"),
        ("a\x85b", "must not contain '\\x85'"),
    ],
)
def test_refusals_say_why(name: str, problem: str) -> None:
    assert branch_name_problem(name) == problem


def test_commit_ids() -> None:
    sha = "8885b967abbd11bfab4cab927b5ba248c2555045"
    assert is_full_commit(sha)
    assert not is_full_commit(sha.upper())
    assert is_commit_prefix(sha) and is_commit_prefix(sha[:8]) and is_commit_prefix(sha[:8].upper())
    assert not is_commit_prefix(sha[:7])
    assert not is_commit_prefix(sha + "0")
    assert not is_commit_prefix("ghijklmn")
    assert not is_commit_prefix(f"{sha[:8]}\n")
