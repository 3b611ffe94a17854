"""GET /api/directory/workflowTask?commitId=..."""

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from conveyor.wiring import Container
from tests.fixtures import WF, FakeClock, Headers, Repos, create_body

URL = "/api/directory/workflowTask"


def create(client: TestClient, headers: Headers, **overrides: object) -> int:
    r = client.post(f"{URL}/create", json=create_body(**overrides), headers=headers)
    assert r.status_code == 200, r.text
    task_id: int = r.json()["task_id"]
    return task_id


def test_item_fields_and_url(
    client: TestClient, admin: Headers, repos: Repos, clock: FakeClock
) -> None:
    create(client, admin)
    sha = repos.voting.head("master")
    [item] = client.get(URL, params={"commitId": sha}, headers=admin).json()
    now = clock()
    assert item["task_id"] == 1
    assert item["url"] == f"http://conveyor.test/workflows/{WF}/tasks/1"
    assert item["status"] == "created"
    assert abs(item["create_time"] - now) <= 2
    # Before a task starts, start_time and end_time equal create_time.
    assert item["start_time"] == item["end_time"] == item["create_time"]
    assert item["workflow_name"] == WF
    assert item["env_name"] == "dev"
    assert all(
        isinstance(item[k], int) for k in ("task_id", "create_time", "start_time", "end_time")
    )


def test_every_task_newest_first_one_entry_each_and_limit(
    client: TestClient, admin: Headers, repos: Repos, clock: FakeClock
) -> None:
    # Both repos' default heads are in every task; the web target shares dyliu's commit,
    # so task 2 pins it twice and must still appear once.
    create(client, admin)
    clock.offset += 10
    create(
        client,
        admin,
        targets=[
            {"name": "redis3", "build": {"repos": []}},
            {"name": "web", "build": {"repos": []}},
        ],
    )
    clock.offset += 10
    create(client, admin)
    sha = repos.dyliu.head("main")
    items = client.get(URL, params={"commitId": sha[:10]}, headers=admin).json()
    assert [i["task_id"] for i in items] == [3, 2, 1]
    assert [len(i["repos"]) for i in items] == [1, 2, 1]
    limited = client.get(URL, params={"commitId": sha, "limit": "2"}, headers=admin).json()
    assert [i["task_id"] for i in limited] == [3, 2]


def test_a_commit_nobody_built_is_an_empty_list(client: TestClient, admin: Headers) -> None:
    create(client, admin)
    r = client.get(URL, params={"commitId": "0" * 40}, headers=admin)
    assert r.status_code == 200
    assert r.json() == []


def test_tasks_of_workflows_the_caller_may_not_view_are_absent(
    client: TestClient, admin: Headers, auth: Callable[..., Headers], repos: Repos
) -> None:
    create(client, admin)
    create(
        client,
        admin,
        workflow_name="team-b-deploy",
        env_name="prod",
        targets=[{"name": "web", "build": {"repos": []}}],
    )
    sha = repos.dyliu.head("main")
    everything = client.get(URL, params={"commitId": sha}, headers=admin).json()
    assert sorted(i["workflow_name"] for i in everything) == [WF, "team-b-deploy"]
    team_a = client.get(URL, params={"commitId": sha}, headers=auth("team-a")).json()
    assert [i["workflow_name"] for i in team_a] == [WF]
    # A role without task:view sees nothing, and gets no 403 either.
    r = client.get(URL, params={"commitId": sha}, headers=auth("creator"))
    assert (r.status_code, r.json()) == (200, [])


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({}, "commitId: "),
        ({"commitId": ""}, "commitId: "),
        ({"commitId": "abcdef1"}, "commitId: "),
        ({"commitId": "abcdefgh"}, "commitId: "),
        ({"commitId": "a" * 41}, "commitId: "),
        ({"commitId": "abcdef12 "}, "commitId: "),
        ({"commitId": "abcdef12", "limit": "0"}, "limit: "),
        ({"commitId": "abcdef12", "limit": "1001"}, "limit: "),
        ({"commitId": "abcdef12", "limit": "ten"}, "limit: "),
        ({"commitId": "abcdef12", "limit": "-1"}, "limit: "),
    ],
)
def test_bad_parameters_are_400(
    client: TestClient, admin: Headers, params: dict[str, str], detail: str
) -> None:
    r = client.get(URL, params=params, headers=admin)
    assert r.status_code == 400
    body = r.json()
    assert (body["resultCode"], body["errorMsg"]) == (400, "param is illegal!")
    assert body["detail"].startswith(detail)


@pytest.mark.parametrize(
    "params", [{"commitId": "xyz"}, {"commitId": "abcdef12", "limit": "ten"}, {"commitId": "ab"}]
)
def test_bad_parameters_from_an_unknown_or_revoked_token_are_401_not_400(
    client: TestClient, container: Container, params: dict[str, str]
) -> None:
    unknown = {"Authorization": "Bearer " + "x" * 43}
    assert client.get(URL, params=params, headers=unknown).status_code == 401
    token, info = container.tokens.issue("alice", ["admin"], None)
    container.tokens.revoke(info.id, actor="admin")
    revoked = {"Authorization": f"Bearer {token}"}
    r = client.get(URL, params=params, headers=revoked)
    assert (r.status_code, r.json()["detail"]) == (401, "token revoked")


def test_a_revoked_token_sees_nothing_of_what_was_read_beside_it(
    client: TestClient, admin: Headers, container: Container, repos: Repos
) -> None:
    """On PostgreSQL the tasks are read with the token, before it is checked."""
    create(client, admin)
    sha = repos.voting.head("master")
    token, info = container.tokens.issue("alice", ["admin"], None)
    headers = {"Authorization": f"Bearer {token}"}
    assert len(client.get(URL, params={"commitId": sha}, headers=headers).json()) == 1
    container.tokens.revoke(info.id, actor="admin")
    r = client.get(URL, params={"commitId": sha}, headers=headers)
    assert r.status_code == 401
    assert "task_id" not in r.text


def test_postgres_serves_the_lookup_from_the_event_loop(container: Container) -> None:
    """So that the PostgreSQL run of this file covers that path (ADR 0004)."""
    assert (container.commit_lookup is None) == container.db.is_sqlite


def test_postgres_serves_a_tasks_detail_from_the_event_loop(container: Container) -> None:
    """So that the PostgreSQL run of the detail's tests covers that path (ADR 0004)."""
    assert (container.status_reads is None) == container.db.is_sqlite
