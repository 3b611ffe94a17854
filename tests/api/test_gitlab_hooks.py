"""POST /api/hooks/gitlab with bodies and headers shaped as GitLab sends them: which
events start tasks, at which commits, and what a bad secret or a redelivery does."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from conveyor.config_file import parse_config
from conveyor.settings import Config
from conveyor.storage.db import Database
from conveyor.storage.tables import audit_log, tasks
from conveyor.wiring import Container
from tests.fixtures import CONFIG, WF, Headers, Repos
from tests.hooks import gitlab_payloads as gl

HOOK = "/api/hooks/gitlab"
SECRET = "hook-secret-0123456789"
PROJECT = "demo/voting-app"
GITLAB = f"""
gitlab: {{url: "https://gitlab.example.com", webhook_secret: "{SECRET}"}}
"""
TRIGGERS = {
    "autoproject-workflow-dev": """
    auto_cancel: true
    triggers:
      - {event: push, repo: voting-app, branches: ["master", "release/*"]}
      - {event: merge_request, repo: voting-app, target_branches: ["master"]}
      - {event: tag, repo: voting-app, tags: ["v*"]}""",
    "team-b-deploy": """
    triggers:
      - {event: push, repo: dyliu}""",
}


def hook_config(repos: Repos) -> str:
    text = CONFIG.format(voting=repos.voting.url, dyliu=repos.dyliu.url)
    text = text.replace(
        "default_branch: master}",
        f"default_branch: master, gitlab_project: {PROJECT}}}",
    ).replace(
        'dyliu: {url: "' + repos.dyliu.url + '"}',
        f'dyliu: {{url: "{repos.dyliu.url}", gitlab_project: 42}}',
    )
    text = text.replace(
        "autoproject-workflow-dev: {env: dev, envs: [staging], services: [redis3, web]}",
        "autoproject-workflow-dev:\n    env: dev\n    envs: [staging]\n    services: [redis3, web]"
        + TRIGGERS["autoproject-workflow-dev"],
    ).replace(
        "team-b-deploy: {env: prod, services: [web]}",
        "team-b-deploy:\n    env: prod\n    services: [web]" + TRIGGERS["team-b-deploy"],
    )
    return GITLAB + text


@pytest.fixture
def config(repos: Repos, tmp_path: Path) -> Config:
    return parse_config(hook_config(repos), base=tmp_path)


def send(
    client: TestClient,
    event: str,
    body: dict[str, Any],
    secret: str | None = SECRET,
    uuid: str | None = None,
) -> Any:
    return client.post(HOOK, json=body, headers=gl.headers(event, secret, uuid))


def push_body(repos: Repos, branch: str = "master", sha: str | None = None) -> dict[str, Any]:
    sha = sha or repos.voting.head(branch)
    return gl.push(ref=f"refs/heads/{branch}", before=gl.ZERO_SHA, after=sha, checkout_sha=sha)


def detail(client: TestClient, admin: Headers, wf: str, task_id: int) -> Any:
    r = client.get(f"/api/workflows/{wf}/tasks/{task_id}", headers=admin)
    assert r.status_code == 200, r.text
    return r.json()


def task_count(database: Database) -> int:
    with database.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one())


def test_a_push_starts_the_matching_workflow_at_exactly_the_pushed_commit(
    client: TestClient, repos: Repos, admin: Headers
) -> None:
    pushed = repos.voting.commit("pushed", branch="master")
    repos.voting.commit("came later", branch="master")  # the branch moved on meanwhile
    r = send(client, gl.PUSH_HOOK, push_body(repos, sha=pushed))
    assert r.status_code == 200
    body = r.json()
    assert (body["resultCode"], body["errorMsg"]) == (0, "success")
    assert body["tasks"] == [{"workflow_name": WF, "task_id": 1}]
    assert f"branch master of {PROJECT}" in body["detail"]
    found = detail(client, admin, WF, 1)
    assert found["created_by"] == f"gitlab:{PROJECT}"
    assert found["env_name"] == "dev"
    # Only the service that builds the pushed repo; its other repo at its default branch.
    commits = {(c["service"], c["repo_name"]): c for c in found["commits"]}
    assert set(commits) == {("redis3", "voting-app"), ("redis3", "dyliu")}
    assert commits[("redis3", "voting-app")]["commit"] == pushed
    assert commits[("redis3", "voting-app")]["ref"] == "master"
    assert commits[("redis3", "dyliu")]["commit"] == repos.dyliu.head()


def test_a_hooks_task_is_in_the_audit_log_under_the_hooks_name(
    client: TestClient, repos: Repos, database: Database
) -> None:
    headers = gl.headers(gl.PUSH_HOOK, SECRET, idempotency_key="a1b2c3")
    assert client.post(HOOK, json=push_body(repos), headers=headers).status_code == 200
    with database.read() as conn:
        row = conn.execute(sa.select(audit_log).where(audit_log.c.action == "task.create")).one()
    assert row.actor == f"gitlab:{PROJECT}"
    assert (row.workflow_name, row.task_id) == (WF, 1)
    assert row.detail["hook"] == "push"
    assert row.detail["delivery"] == "key:a1b2c3"


@pytest.mark.parametrize(
    ("branch", "created"),
    [("master", True), ("release/2.0", True), ("feature/x", False), ("releases", False)],
)
def test_only_branches_a_trigger_names_start_a_task(
    client: TestClient, repos: Repos, branch: str, created: bool
) -> None:
    repos.voting.commit("work", branch=branch)
    r = send(client, gl.PUSH_HOOK, push_body(repos, branch))
    assert r.status_code == 200
    assert bool(r.json()["tasks"]) is created
    if not created:
        assert "no trigger of any workflow matches" in r.json()["detail"]


def test_a_deleted_branch_starts_nothing(
    client: TestClient, repos: Repos, database: Database
) -> None:
    body = gl.push(
        ref="refs/heads/master",
        before=repos.voting.head("master"),
        after=gl.ZERO_SHA,
        checkout_sha=None,
    )
    r = send(client, gl.PUSH_HOOK, body)
    assert (r.status_code, r.json()["tasks"]) == (200, [])
    assert "deleted" in r.json()["detail"]
    assert task_count(database) == 0


def test_a_project_named_by_its_numeric_id_matches_by_the_hooks_project_id(
    client: TestClient, repos: Repos, admin: Headers
) -> None:
    sha = repos.dyliu.head()
    body = gl.push(
        project="other/renamed-path",
        project_id=42,
        ref="refs/heads/main",
        before=gl.ZERO_SHA,
        after=sha,
        checkout_sha=sha,
    )
    r = send(client, gl.PUSH_HOOK, body)
    assert r.status_code == 200, r.text
    assert r.json()["tasks"] == [{"workflow_name": "team-b-deploy", "task_id": 1}]
    assert detail(client, admin, "team-b-deploy", 1)["commits"][0]["commit"] == sha


@pytest.mark.parametrize(("tag", "created"), [("v1.0.0", True), ("nightly", False)])
def test_a_tag_push_starts_a_task_at_the_tagged_commit(
    client: TestClient, repos: Repos, admin: Headers, tag: str, created: bool
) -> None:
    sha = repos.voting.head("master")
    body = gl.tag_push(ref=f"refs/tags/{tag}", before=gl.ZERO_SHA, after=sha, checkout_sha=sha)
    r = send(client, gl.TAG_PUSH_HOOK, body)
    assert r.status_code == 200
    assert bool(r.json()["tasks"]) is created
    if created:
        commits = detail(client, admin, WF, 1)["commits"]
        voting = next(c for c in commits if c["repo_name"] == "voting-app")
        assert (voting["ref"], voting["commit"]) == (tag, sha)


def test_a_deleted_tag_starts_nothing(client: TestClient, repos: Repos) -> None:
    body = gl.tag_push(
        ref="refs/tags/v1.0.0", before=repos.voting.head("master"), after=gl.ZERO_SHA,
        checkout_sha=None,
    )  # fmt: skip
    r = send(client, gl.TAG_PUSH_HOOK, body)
    assert r.json()["tasks"] == []


BUILDS = {"open", "reopen"}


@pytest.mark.parametrize("action", [*gl.MR_ACTIONS, "update-with-new-commits"])
def test_merge_request_actions_that_bring_code_start_a_task_and_no_other(
    client: TestClient, repos: Repos, admin: Headers, database: Database, action: str
) -> None:
    head = repos.voting.merge_request(7, "mr work")
    new_commits = action == "update-with-new-commits"
    body = gl.merge_request(
        action="update" if new_commits else action,
        iid=7,
        last_commit=head,
        oldrev=repos.voting.head("master") if new_commits else None,
    )
    r = send(client, gl.MERGE_REQUEST_HOOK, body)
    assert r.status_code == 200
    if action in BUILDS or new_commits:
        assert r.json()["tasks"] == [{"workflow_name": WF, "task_id": 1}]
        commits = detail(client, admin, WF, 1)["commits"]
        voting = {c["kind"]: c for c in commits if c["repo_name"] == "voting-app"}
        assert voting["merge_request"]["commit"] == head
        # Built merged onto the target branch's head at create time.
        assert voting["branch"]["ref"] == "master"
        assert voting["branch"]["commit"] == repos.voting.head("master")
    else:
        assert r.json()["tasks"] == []
        assert "nothing new to build" in r.json()["detail"]
        assert task_count(database) == 0


def test_a_merge_request_into_a_branch_no_trigger_names_starts_nothing(
    client: TestClient, repos: Repos
) -> None:
    head = repos.voting.merge_request(3, "mr work")
    body = gl.merge_request(action="open", iid=3, last_commit=head, target_branch="develop")
    r = send(client, gl.MERGE_REQUEST_HOOK, body)
    assert r.json()["tasks"] == []


@pytest.mark.parametrize("secret", [None, "wrong-secret-0123456789", ""])
def test_a_wrong_or_missing_secret_is_401_and_starts_nothing(
    client: TestClient, repos: Repos, database: Database, secret: str | None
) -> None:
    r = send(client, gl.PUSH_HOOK, push_body(repos), secret=secret)
    assert r.status_code == 401
    assert r.json()["resultCode"] == 401
    assert r.json()["errorMsg"] == "auth failed!"
    assert "X-Gitlab-Token" in r.json()["detail"]
    assert task_count(database) == 0


def test_the_hook_needs_no_conveyor_token_and_ignores_one(
    client: TestClient, repos: Repos, admin: Headers
) -> None:
    r = client.post(
        HOOK,
        json=push_body(repos),
        headers={**gl.headers(gl.PUSH_HOOK, "wrong-secret-0123456789"), **admin},
    )
    assert r.status_code == 401


def test_a_retry_with_the_same_idempotency_key_starts_nothing_new(
    client: TestClient, repos: Repos, database: Database
) -> None:
    # GitLab's retries and its Resend keep Idempotency-Key; each execution of a hook
    # gets an X-Gitlab-Event-UUID of its own.
    key = "7f9b2c3e-0000-4000-8000-000000000001"
    first = client.post(
        HOOK, json=push_body(repos), headers=gl.headers(gl.PUSH_HOOK, SECRET, idempotency_key=key)
    ).json()
    again = client.post(
        HOOK, json=push_body(repos), headers=gl.headers(gl.PUSH_HOOK, SECRET, idempotency_key=key)
    ).json()
    assert again["tasks"] == first["tasks"] == [{"workflow_name": WF, "task_id": 1}]
    assert "received before" in again["detail"]
    assert task_count(database) == 1
    other = send(client, gl.PUSH_HOOK, push_body(repos)).json()  # a new delivery
    assert other["tasks"] == [{"workflow_name": WF, "task_id": 2}]


def without_idempotency_key(event: str, uuid: str) -> dict[str, str]:
    headers = gl.headers(event, SECRET, uuid)
    del headers["Idempotency-Key"]
    return headers


def test_without_an_idempotency_key_the_same_uuid_and_body_again_is_a_redelivery(
    client: TestClient, repos: Repos, database: Database
) -> None:
    uuid = "2b7e7b7a-0000-4000-8000-000000000001"
    headers = without_idempotency_key(gl.PUSH_HOOK, uuid)
    first = client.post(HOOK, json=push_body(repos), headers=headers).json()
    again = client.post(HOOK, json=push_body(repos), headers=headers).json()
    assert again["tasks"] == first["tasks"] == [{"workflow_name": WF, "task_id": 1}]
    assert task_count(database) == 1


def test_hooks_one_gitlab_request_fires_under_one_uuid_are_each_handled(
    client: TestClient, repos: Repos, database: Database
) -> None:
    # A push to a merge request's source branch fires a Push Hook and a Merge Request
    # Hook (update) from one request: one X-Gitlab-Event-UUID, two events.
    uuid = "3c8d8c8b-0000-4000-8000-000000000002"
    push = client.post(
        HOOK, json=push_body(repos), headers=without_idempotency_key(gl.PUSH_HOOK, uuid)
    )
    head = repos.voting.merge_request(2, "mr")
    body = gl.merge_request(
        action="update", iid=2, last_commit=head, oldrev=repos.voting.head("master")
    )
    mr = client.post(HOOK, json=body, headers=without_idempotency_key(gl.MERGE_REQUEST_HOOK, uuid))
    assert push.json()["tasks"] == [{"workflow_name": WF, "task_id": 1}]
    assert mr.json()["tasks"] == [{"workflow_name": WF, "task_id": 2}]


def test_auto_cancel_a_newer_push_cancels_the_older_task_of_that_branch_only(
    client: TestClient, repos: Repos, admin: Headers, database: Database
) -> None:
    send(client, gl.PUSH_HOOK, push_body(repos))  # master: task 1
    repos.voting.commit("release work", branch="release/2.0")
    send(client, gl.PUSH_HOOK, push_body(repos, "release/2.0"))  # task 2
    head = repos.voting.merge_request(5, "mr")
    send(client, gl.MERGE_REQUEST_HOOK, gl.merge_request(action="open", iid=5, last_commit=head))
    repos.voting.commit("second push", branch="master")
    r = send(client, gl.PUSH_HOOK, push_body(repos))  # master again: task 4
    assert r.json()["tasks"] == [{"workflow_name": WF, "task_id": 4}]
    statuses = {i: detail(client, admin, WF, i)["status"] for i in (1, 2, 3, 4)}
    assert statuses == {1: "cancelled", 2: "created", 3: "created", 4: "created"}
    with database.read() as conn:
        row = conn.execute(sa.select(audit_log).where(audit_log.c.action == "task.cancel")).one()
    assert (row.actor, row.task_id) == (f"gitlab:{PROJECT}", 1)
    assert row.detail["reason"] == "auto_cancel"
    assert row.detail["superseded_by"] == 4


def test_an_api_task_is_never_auto_cancelled_by_a_hook(
    client: TestClient, repos: Repos, admin: Headers
) -> None:
    from tests.fixtures import create_body

    assert client.post(
        "/api/directory/workflowTask/create", json=create_body(), headers=admin
    ).status_code == 200  # fmt: skip
    send(client, gl.PUSH_HOOK, push_body(repos))
    assert detail(client, admin, WF, 1)["status"] == "created"


def test_a_trigger_whose_task_cannot_be_made_says_why_and_the_hook_still_succeeds(
    client: TestClient, repos: Repos
) -> None:
    # A merge request into a branch the repository does not have: nothing to merge onto.
    head = repos.voting.merge_request(9, "mr")
    body = gl.merge_request(action="open", iid=9, last_commit=head, target_branch="master")
    repos_path = repos.voting.path
    from tests.conftest import git

    git(repos_path, "branch", "-q", "-m", "master", "renamed")
    r = send(client, gl.MERGE_REQUEST_HOOK, body)
    assert r.status_code == 200
    assert r.json()["tasks"] == []
    assert "not created: workflows.autoproject-workflow-dev.triggers[1]" in r.json()["detail"]
    assert "branch 'master' not found" in r.json()["detail"]


def test_events_gitlab_sends_that_start_nothing_are_answered_200(
    client: TestClient,
) -> None:
    body = {"object_kind": "note", "event_type": "note"}
    r = client.post(HOOK, json=body, headers=gl.headers("Note Hook", SECRET))
    assert (r.status_code, r.json()["tasks"]) == (200, [])
    assert "Note Hook" in r.json()["detail"]


def test_a_body_missing_what_the_event_needs_is_a_400_naming_the_field(
    client: TestClient,
) -> None:
    r = client.post(
        HOOK,
        json={"object_kind": "push", "ref": "refs/heads/master", "checkout_sha": "a" * 40},
        headers=gl.headers(gl.PUSH_HOOK, SECRET),
    )
    assert r.status_code == 400
    assert r.json()["detail"] == "project.path_with_namespace: required"


def test_a_redelivery_racing_the_first_delivery_creates_one_task(
    container: Container, repos: Repos, database: Database
) -> None:
    assert container.hooks is not None
    hooks = container.hooks
    delivery = "key:5f0c3a7e-0000-4000-8000-00000000race"
    body = push_body(repos)
    start = threading.Barrier(4)

    def deliver() -> list[tuple[str, int]]:
        start.wait()
        return hooks.receive(gl.PUSH_HOOK, delivery, body, hooks.check_secret(SECRET)).tasks

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: deliver(), range(4)))
    assert task_count(database) == 1
    assert all(a == [(WF, 1)] for a in answers), answers


def test_a_late_hook_for_an_older_commit_cancels_nothing(
    client: TestClient, repos: Repos, admin: Headers
) -> None:
    older = repos.voting.commit("first", branch="master")
    newer = repos.voting.commit("second", branch="master")
    # GitLab delivered the newer push first; the older one arrives late.
    assert (
        send(client, gl.PUSH_HOOK, push_body(repos, sha=newer)).json()["tasks"][0]["task_id"] == 1
    )
    late = send(client, gl.PUSH_HOOK, push_body(repos, sha=older)).json()
    assert late["tasks"] == [{"workflow_name": WF, "task_id": 2}]
    assert "is no longer the head: nothing auto-cancelled" in late["detail"]
    assert detail(client, admin, WF, 1)["status"] == "created"


def test_a_merge_request_from_a_fork_is_not_built_unless_the_trigger_says_forks(
    client: TestClient, repos: Repos, database: Database
) -> None:
    head = repos.voting.merge_request(6, "from a fork")
    body = gl.merge_request(
        action="open", iid=6, last_commit=head, source_project="mallory/voting-app",
        source_project_id=99,
    )  # fmt: skip
    r = send(client, gl.MERGE_REQUEST_HOOK, body)
    assert r.json()["tasks"] == []
    assert "comes from the fork mallory/voting-app (forks: false)" in r.json()["detail"]
    assert task_count(database) == 0


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"iid": 2**31}, "pr: must be at most 2147483647"),
        ({"iid": 2**63}, "pr: must be at most 2147483647"),
        ({"target_branch": "b" * 300}, "branch: longer than 255 characters"),
    ],
)
def test_a_hook_is_held_to_the_apis_limits_and_says_which(
    client: TestClient, repos: Repos, database: Database, change: dict[str, Any], why: str
) -> None:
    head = repos.voting.merge_request(1, "mr")
    body = gl.merge_request(action="open", last_commit=head, target_branch="master")
    body["object_attributes"].update(change)
    trigger_matches_all = "target_branch" not in change
    r = send(client, gl.MERGE_REQUEST_HOOK, body)
    assert r.status_code == 200
    assert r.json()["tasks"] == []
    if trigger_matches_all:
        assert why in r.json()["detail"]
    assert task_count(database) == 0


def test_a_long_project_path_still_makes_a_task_its_creator_cut_to_fit(
    client: TestClient, repos: Repos, admin: Headers
) -> None:
    sha = repos.dyliu.head()
    long_path = "group/" + "x" * 300
    body = gl.push(
        project=long_path, project_id=42, ref="refs/heads/main", before=gl.ZERO_SHA,
        after=sha, checkout_sha=sha,
    )  # fmt: skip
    r = send(client, gl.PUSH_HOOK, body)
    assert r.status_code == 200, r.text
    assert r.json()["tasks"] == [{"workflow_name": "team-b-deploy", "task_id": 1}]
    created_by = detail(client, admin, "team-b-deploy", 1)["created_by"]
    assert created_by == f"gitlab:{long_path}"[:200]
