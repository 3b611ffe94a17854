"""Links from a task's commits to GitLab's pages, where the config names the project."""

from conveyor.api.links import commit_links
from conveyor.config_file import parse_config
from conveyor.domain.tasks import RefKind
from conveyor.domain.views import CommitMatch
from tests.fixtures import CONFIG

SHA = "0123456789abcdef0123456789abcdef01234567"


def config(project: str | int | None) -> str:
    text = CONFIG.format(voting="/r/voting", dyliu="/r/dyliu")
    if project is None:
        return text
    return (
        text.replace(
            'voting-app: {url: "/r/voting", default_branch: master}',
            f'voting-app: {{url: "/r/voting", default_branch: master, gitlab_project: {project}}}',
        )
        + "gitlab: {url: 'https://gitlab.example.com/'}\n"
    )


def test_commits_link_to_their_project_the_branch_or_the_merge_request() -> None:
    cfg = parse_config(config("demo/voting-app"))
    branch = CommitMatch("redis3", "voting-app", RefKind.BRANCH, "release/1.0", SHA)
    assert commit_links(cfg, branch) == {
        "commit_url": f"https://gitlab.example.com/demo/voting-app/-/commit/{SHA}",
        "ref_url": "https://gitlab.example.com/demo/voting-app/-/tree/release/1.0",
    }
    mr = CommitMatch(
        "redis3", "voting-app", RefKind.MERGE_REQUEST, "refs/merge-requests/7/head", SHA
    )
    assert commit_links(cfg, mr)["ref_url"] == (
        "https://gitlab.example.com/demo/voting-app/-/merge_requests/7"
    )


def test_no_link_without_a_gitlab_project_path() -> None:
    none = {"commit_url": None, "ref_url": None}
    other = CommitMatch("web", "dyliu", RefKind.BRANCH, "main", SHA)  # no gitlab_project
    assert commit_links(parse_config(config("demo/voting-app")), other) == none
    voting = CommitMatch("redis3", "voting-app", RefKind.BRANCH, "main", SHA)
    assert commit_links(parse_config(config(None)), voting) == none
    # A numeric project id names no page to link to.
    assert commit_links(parse_config(config(42)), voting) == none
