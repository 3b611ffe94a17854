"""Tokens and permissions, on every endpoint."""

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from conveyor.wiring import Container
from tests.fixtures import WF, FakeClock, Headers, create_body

LOOKUP = "/api/directory/workflowTask?commitId=abcdef12"
CREATE = "/api/directory/workflowTask/create"
CANCEL = f"/api/directory/workflowTask/id/1/pipelines/{WF}/cancel"
RESTART = f"/api/directory/workflowTask/id/1/pipelines/{WF}/restart"
ENDPOINTS = [("GET", LOOKUP), ("POST", CREATE), ("POST", CANCEL), ("POST", RESTART)]


def call(
    client: TestClient, method: str, url: str, headers: Headers
) -> tuple[int, dict[str, object]]:
    if method == "GET":
        r = client.get(url, headers=headers)
    else:
        r = client.post(url, json=create_body(), headers=headers)
    return r.status_code, r.json()


def assert_401(client: TestClient, headers: Headers, detail: str) -> None:
    for method, url in ENDPOINTS:
        status, body = call(client, method, url, headers)
        assert status == 401, (method, url)
        assert body == {"resultCode": 401, "errorMsg": "auth failed!", "detail": detail}


def test_no_token(client: TestClient) -> None:
    assert_401(client, {}, "no Authorization header")


@pytest.mark.parametrize(
    "value",
    ["Bearer", "Bearer short", "Basic dXNlcjpwYXNz", "cvy_" + "a" * 43, "Bearer cvy_" + "!" * 43],
)
def test_malformed_token(client: TestClient, value: str) -> None:
    for method, url in ENDPOINTS:
        status, body = call(client, method, url, {"Authorization": value})
        assert status == 401
        assert body["errorMsg"] == "auth failed!"


def test_unknown_token(client: TestClient) -> None:
    assert_401(client, {"Authorization": "Bearer cvy_" + "A" * 43}, "unknown token")


def test_token_in_the_query_string_is_not_accepted(
    client: TestClient, container: Container
) -> None:
    token, _ = container.tokens.issue("alice", ["admin"], None)
    r = client.get(f"{LOOKUP}&token={token}&api_key={token}")
    assert r.status_code == 401


def test_expired_token(client: TestClient, container: Container, clock: FakeClock) -> None:
    token, _ = container.tokens.issue("alice", ["admin"], 60)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(LOOKUP, headers=headers).status_code == 200
    clock.offset += 61
    assert_401(client, headers, "token expired")


def test_revoked_token(client: TestClient, container: Container) -> None:
    token, info = container.tokens.issue("alice", ["admin"], None)
    headers = {"Authorization": f"X-API-KEY {token}"}
    assert client.get(LOOKUP, headers=headers).status_code == 200
    assert container.tokens.revoke(info.id, actor="admin") is True
    assert container.tokens.revoke(info.id, actor="admin") is False
    assert_401(client, headers, "token revoked")


def test_tokens_are_stored_only_as_hashes(container: Container) -> None:
    token, _ = container.tokens.issue("alice", ["admin"], None)
    with container.db.engine.connect() as conn:
        dump = "\n".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM api_tokens"))
    assert token not in dump
    assert token.removeprefix("cvy_") not in dump


@pytest.mark.parametrize(
    ("method", "url", "permission"),
    [
        ("POST", CREATE, "task:create"),
        ("POST", CANCEL, "task:cancel"),
        ("POST", RESTART, "task:restart"),
    ],
)
def test_role_without_the_permission_is_403(
    client: TestClient, auth: Callable[..., Headers], method: str, url: str, permission: str
) -> None:
    status, body = call(client, method, url, auth("viewer"))
    assert status == 403
    assert body == {
        "resultCode": 403,
        "errorMsg": "forbidden",
        "detail": f"user 'alice' lacks {permission} on workflow '{WF}'",
    }


def test_permission_on_other_workflows_only_is_403(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    team_a = auth("team-a")
    body = create_body(
        workflow_name="team-b-deploy",
        env_name="prod",
        targets=[{"name": "web", "build": {"repos": []}}],
    )
    r = client.post(CREATE, json=body, headers=team_a)
    assert r.status_code == 403
    for action in ("cancel", "restart"):
        r = client.post(
            f"/api/directory/workflowTask/id/1/pipelines/team-b-deploy/{action}", headers=team_a
        )
        assert r.status_code == 403
    # The same token may act on its own workflows.
    assert client.post(CREATE, json=create_body(), headers=team_a).status_code == 200


def test_unauthenticated_bad_input_is_still_401_not_400(client: TestClient) -> None:
    assert client.post(CREATE, content=b"{not json").status_code == 401
    assert client.get("/api/directory/workflowTask?commitId=xyz").status_code == 401
    assert (
        client.post(f"/api/directory/workflowTask/id/zero/pipelines/{WF}/cancel").status_code == 401
    )


def test_a_token_with_several_roles_gets_the_union(
    client: TestClient, auth: Callable[..., Headers]
) -> None:
    headers = auth("viewer", "creator")
    assert client.post(CREATE, json=create_body(), headers=headers).status_code == 200
    assert client.get(LOOKUP, headers=headers).status_code == 200
