"""GET /api/workflows and GET /api/workflows/{name}/tasks: what a person's first pages
list, filtered by what the token may view, a page at a time."""

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.fixtures import WF, Headers, Repos, create_body

CREATE = "/api/directory/workflowTask/create"
CANCEL = "/api/directory/workflowTask/id/{id}/pipelines/{wf}/cancel"


def create(client: TestClient, admin: Headers, **overrides: object) -> int:
    r = client.post(CREATE, json=create_body(**overrides), headers=admin)
    assert r.status_code == 200, r.text
    task_id: int = r.json()["task_id"]
    return task_id


def test_workflows_are_listed_with_their_newest_task_and_what_waits(
    client: TestClient, admin: Headers
) -> None:
    assert client.get("/api/workflows", headers=admin).json()[0]["latest"] is None
    create(client, admin)
    newest = create(client, admin)
    found = {w["name"]: w for w in client.get("/api/workflows", headers=admin).json()}
    assert list(found) == [WF, "team-b-deploy"]
    wf = found[WF]
    assert (wf["env"], wf["envs"], wf["services"]) == ("dev", ["staging"], ["redis3", "web"])
    assert wf["latest"]["task_id"] == newest
    assert wf["latest"]["status"] == "created"
    assert wf["latest"]["url"] == f"http://conveyor.test/workflows/{WF}/tasks/{newest}"
    assert (wf["waiting"], wf["running"]) == (2, 0)
    assert found["team-b-deploy"]["latest"] is None


def test_the_workflow_list_shows_only_what_the_token_may_view(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    assert [w["name"] for w in client.get("/api/workflows", headers=auth("team-a")).json()] == [WF]
    assert client.get("/api/workflows", headers=auth("creator")).json() == []
    assert client.get("/api/workflows").status_code == 401


def test_a_workflows_tasks_come_newest_first_a_page_at_a_time(
    client: TestClient, admin: Headers
) -> None:
    ids = [create(client, admin) for _ in range(5)]
    url = f"/api/workflows/{WF}/tasks"
    first = client.get(f"{url}?limit=2", headers=admin).json()
    assert [t["task_id"] for t in first["tasks"]] == [5, 4]
    assert first["next_before"] == 4
    second = client.get(f"{url}?limit=2&before=4", headers=admin).json()
    assert [t["task_id"] for t in second["tasks"]] == [3, 2]
    last = client.get(f"{url}?limit=2&before=2", headers=admin).json()
    assert ([t["task_id"] for t in last["tasks"]], last["next_before"]) == ([1], None)
    assert ids == [1, 2, 3, 4, 5]
    item = first["tasks"][0]
    assert {r["repo_name"] for r in item["repos"]} == {"voting-app", "dyliu"}
    assert item["attempt"] == 1


def test_tasks_filter_by_status_branch_and_commit(
    client: TestClient, admin: Headers, repos: Repos
) -> None:
    create(client, admin)
    repos.voting.commit("on a branch", branch="feature-x")
    body = create_body()
    body["targets"] = [
        {
            "name": "redis3",
            "build": {"repos": [{"repo_name": "voting-app", "branch": "feature-x", "pr": 0}]},
        }
    ]
    r = client.post(CREATE, json=body, headers=admin)
    second = r.json()["task_id"]
    assert client.post(CANCEL.format(id=1, wf=WF), headers=admin).status_code == 200
    url = f"/api/workflows/{WF}/tasks"

    def ids(query: str) -> list[int]:
        r = client.get(f"{url}?{query}", headers=admin)
        assert r.status_code == 200, r.text
        return [t["task_id"] for t in r.json()["tasks"]]

    assert ids("status=cancelled") == [1]
    assert ids("status=created") == [second]
    assert ids("branch=feature-x") == [second]
    assert ids("branch=master") == [1]
    head = repos.voting.head("feature-x")
    assert ids(f"commit={head[:10].upper()}") == [second]


def test_bad_list_queries_are_400_naming_the_parameter_and_other_workflows_403(
    client: TestClient, admin: Headers, auth: Callable[..., Headers]
) -> None:
    url = f"/api/workflows/{WF}/tasks"
    for query, detail in (
        ("status=lost", "status: 'lost' is not one of created, running"),
        ("limit=0", "limit: must be between 1 and 200"),
        ("before=0", "before: '0' is not a task id"),
        ("branch=a;b", "branch: 'a;b' must not contain"),
        ("commit=xyz", "commit: must be a full commit id or a prefix"),
    ):
        r = client.get(f"{url}?{query}", headers=admin)
        assert r.status_code == 400, query
        assert r.json()["detail"].startswith(detail), r.json()
    assert client.get(url, headers=auth("creator")).status_code == 403
    r = client.get("/api/workflows/nope/tasks", headers=admin)
    assert (r.status_code, r.json()["detail"]) == (400, "name: unknown workflow 'nope'")


def test_a_workflow_says_what_a_task_of_it_may_build_and_what_the_caller_may_do(
    client: TestClient, admin: Headers, auth: Callable[..., Headers]
) -> None:
    r = client.get(f"/api/workflows/{WF}", headers=admin)
    assert r.status_code == 200
    wf = r.json()
    assert (wf["env"], wf["envs"], wf["may_create"]) == ("dev", ["staging"], True)
    redis3, web = wf["services"]
    assert redis3 == {
        "name": "redis3",
        "repos": [
            {"name": "voting-app", "default_branch": "master"},
            {"name": "dyliu", "default_branch": "main"},
        ],
        "variables": {"FLAVOUR": "plain", "SIZE": "", "MODE": ""},
    }
    assert (web["name"], web["variables"]) == ("web", {})
    assert client.get(f"/api/workflows/{WF}", headers=auth("viewer")).json()["may_create"] is False
    listed = client.get("/api/workflows", headers=auth("viewer")).json()
    assert [w["may_create"] for w in listed] == [False, False]
    assert client.get(f"/api/workflows/{WF}", headers=auth("creator")).status_code == 403
    r = client.get("/api/workflows/nope", headers=admin)
    assert (r.status_code, r.json()["detail"]) == (400, "name: unknown workflow 'nope'")
