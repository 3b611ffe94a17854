"""Links to GitLab's pages for what a task built, where the config names the project."""

from urllib.parse import quote

from conveyor.domain.views import CommitMatch
from conveyor.settings import Config

_MR_REF = "refs/merge-requests/"


def _project_url(config: Config, repo_name: str) -> str | None:
    repo = config.repos.get(repo_name)
    if config.gitlab is None or repo is None or not isinstance(repo.gitlab_project, str):
        return None  # a numeric project id names no page
    return f"{config.gitlab.url.rstrip('/')}/{quote(repo.gitlab_project)}"


def commit_links(config: Config, match: CommitMatch) -> dict[str, str | None]:
    """`commit_url` and `ref_url` (the branch, or the merge request) on GitLab, or None."""
    project = _project_url(config, match.repo_name)
    if project is None:
        return {"commit_url": None, "ref_url": None}
    if match.ref.startswith(_MR_REF):
        iid = match.ref.removeprefix(_MR_REF).split("/", 1)[0]
        ref_url = f"{project}/-/merge_requests/{iid}"
    else:
        ref_url = f"{project}/-/tree/{quote(match.ref)}"
    return {"commit_url": f"{project}/-/commit/{match.commit}", "ref_url": ref_url}
