"""A repo's own webhook secret: only it starts what builds that repo, and it starts
nothing else; the config-wide secret starts the rest."""

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conveyor.config_file import parse_config
from conveyor.settings import Config
from tests.api.test_gitlab_hooks import HOOK, SECRET, hook_config, push_body
from tests.fixtures import Repos
from tests.hooks import gitlab_payloads as gl

DYLIU_SECRET = "dyliu-own-secret-0123"


@pytest.fixture
def config(repos: Repos, tmp_path: Path) -> Config:
    text = hook_config(repos).replace(
        "gitlab_project: 42}", f'gitlab_project: 42, gitlab_webhook_secret: "{DYLIU_SECRET}"}}'
    )
    return parse_config(text, base=tmp_path)


def dyliu_push(repos: Repos) -> dict[str, Any]:
    sha = repos.dyliu.head()
    return gl.push(
        project="demo/dyliu", project_id=42, ref="refs/heads/main", before=gl.ZERO_SHA,
        after=sha, checkout_sha=sha,
    )  # fmt: skip


def send(client: TestClient, body: dict[str, Any], secret: str, **headers: str) -> Any:
    sent = {**gl.headers(gl.PUSH_HOOK, secret), **headers}
    r = client.post(HOOK, json=body, headers=sent)
    assert r.status_code == 200, r.text
    return r.json()


def test_only_the_repos_own_secret_starts_its_tasks(client: TestClient, repos: Repos) -> None:
    answer = send(client, dyliu_push(repos), SECRET)
    assert answer["tasks"] == []
    assert "repo 'dyliu' has a webhook secret of its own" in answer["detail"]
    answer = send(client, dyliu_push(repos), DYLIU_SECRET)
    assert answer["tasks"] == [{"workflow_name": "team-b-deploy", "task_id": 1}]


def test_a_repos_own_secret_starts_no_other_repos_tasks(client: TestClient, repos: Repos) -> None:
    answer = send(client, push_body(repos), DYLIU_SECRET)
    assert answer["tasks"] == []
    assert "the hook carried another repo's own secret" in answer["detail"]


def test_the_wide_secret_cannot_build_a_guarded_repo_through_another_repos_trigger(
    client: TestClient, repos: Repos
) -> None:
    # voting-app's trigger builds redis3, whose build checks out dyliu too.
    answer = send(client, push_body(repos), SECRET)
    assert answer["tasks"] == []
    assert (
        "it would build repo 'dyliu', whose own webhook secret the hook did not carry"
        in (answer["detail"])
    )


def test_a_delivery_under_one_secret_never_answers_for_another(
    client: TestClient, repos: Repos
) -> None:
    key = {"Idempotency-Key": "shared-key-0001"}
    first = send(client, dyliu_push(repos), DYLIU_SECRET, **key)
    assert first["tasks"] == [{"workflow_name": "team-b-deploy", "task_id": 1}]
    # The same key under the wide secret is another delivery: it learns nothing of the
    # first, and its own answer is its own (here: nothing it may start).
    other = send(client, dyliu_push(repos), SECRET, **key)
    assert other["tasks"] == []
    assert "received before" not in other["detail"]
