"""GET /api/notifications and POST /api/notifications/{id}/retry: what operators see of
the outbox, filtered by what the caller may view; and the hook when GitLab is not set up."""

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conveyor.config_file import parse_config
from conveyor.settings import Config
from tests.fixtures import CONFIG, WF, Headers, Repos, create_body
from tests.hooks import gitlab_payloads as gl

CREATE = "/api/directory/workflowTask/create"


@pytest.fixture
def config(repos: Repos, tmp_path: Path) -> Config:
    text = CONFIG.format(voting=repos.voting.url, dyliu=repos.dyliu.url).replace(
        "default_branch: master}", "default_branch: master, gitlab_project: demo/voting-app}"
    )
    head = 'gitlab: {url: "http://127.0.0.1:9", token: "glpat-not-reached-0123"}\n'
    return parse_config(head + text, base=tmp_path)


def test_waiting_notifications_are_listed_newest_first_with_what_they_carry(
    client: TestClient, admin: Headers, repos: Repos
) -> None:
    assert client.post(CREATE, json=create_body(), headers=admin).status_code == 200
    r = client.get("/api/notifications", headers=admin)
    assert r.status_code == 200
    (entry,) = r.json()
    sha = repos.voting.head("master")
    assert entry["channel"] == "gitlab"
    assert entry["event"] == "task.created"
    assert entry["state"] == "waiting"
    assert entry["url"] == f"http://127.0.0.1:9/api/v4/projects/demo%2Fvoting-app/statuses/{sha}"
    assert (entry["workflow_name"], entry["task_id"]) == (WF, 1)
    assert entry["attempts"] == 0
    assert '"state":"pending"' in entry["body"]
    assert "glpat" not in r.text  # the token is added when sending, never stored


def test_the_listing_shows_only_workflows_the_caller_may_view(
    client: TestClient, admin: Headers, auth: Callable[..., Headers]
) -> None:
    client.post(CREATE, json=create_body(), headers=admin)
    assert len(client.get("/api/notifications", headers=auth("team-a")).json()) == 1
    # task:create alone views no workflow's tasks, nor their notifications.
    assert client.get("/api/notifications", headers=auth("creator")).json() == []


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("state=lost", "state: 'lost' is not one of undelivered, waiting, dropped"),
        ("limit=0", "limit: must be between 1 and 1000"),
        ("limit=x", "limit: 'x' must be a whole number"),
    ],
)
def test_bad_listing_queries_are_400_naming_the_parameter(
    client: TestClient, admin: Headers, query: str, detail: str
) -> None:
    r = client.get(f"/api/notifications?{query}", headers=admin)
    assert r.status_code == 400
    assert r.json()["detail"].startswith(detail)


def test_sending_again_needs_restart_permission_and_a_message_that_waits(
    client: TestClient, admin: Headers, auth: Callable[..., Headers]
) -> None:
    client.post(CREATE, json=create_body(), headers=admin)
    (entry,) = client.get("/api/notifications", headers=admin).json()
    url = f"/api/notifications/{entry['id']}/retry"
    assert client.post(url, headers=auth("viewer")).status_code == 403
    assert client.post(url).status_code == 401
    r = client.post(url, headers=admin)
    assert r.status_code == 200
    assert (r.json()["state"], r.json()["attempts"]) == ("waiting", 0)
    assert client.post("/api/notifications/999/retry", headers=admin).status_code == 404
    delivered = client.get("/api/notifications?state=delivered", headers=admin).json()
    assert delivered == []


def test_without_a_webhook_secret_the_hook_is_refused_and_says_why(
    client: TestClient, repos: Repos
) -> None:
    sha = repos.voting.head("master")
    body = gl.push(ref="refs/heads/master", before=gl.ZERO_SHA, after=sha, checkout_sha=sha)
    r = client.post("/api/hooks/gitlab", json=body, headers=gl.headers(gl.PUSH_HOOK, "anything"))
    assert r.status_code == 401
    assert r.json()["detail"] == "GitLab hooks are off here: gitlab.webhook_secret is not set"
