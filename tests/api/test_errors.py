"""Error rows that cut across endpoints, and the published OpenAPI document."""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from conveyor.wiring import Container
from tests.fixtures import WF, Headers, create_body

BASE = "/api/directory/workflowTask"


@pytest.fixture
def broken_database(container: Container) -> Iterator[None]:
    """A real fault: the tasks table is gone from under the server."""
    with container.db.write() as conn:
        conn.execute(sa.text("ALTER TABLE tasks RENAME TO tasks_away"))
    yield
    with container.db.write() as conn:
        conn.execute(sa.text("ALTER TABLE tasks_away RENAME TO tasks"))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{BASE}?commitId=abcdef12"),
        ("POST", f"{BASE}/create"),
        ("POST", f"{BASE}/id/1/pipelines/{WF}/cancel"),
        ("POST", f"{BASE}/id/1/pipelines/{WF}/restart"),
    ],
)
def test_a_real_fault_is_500_with_a_request_id_and_no_internals(
    client: TestClient,
    admin: Headers,
    broken_database: None,
    method: str,
    path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = client.request(
        method, path, json=create_body() if method == "POST" else None, headers=admin
    )
    assert r.status_code == 500
    rid = r.headers["X-Request-ID"]
    assert r.json() == {
        "resultCode": 500,
        "errorMsg": "internal error",
        "detail": f"request id {rid}",
    }
    assert "tasks" not in r.text.lower().replace("internal error", "")
    # The fault is logged with the same id, so an operator can find it.
    assert any(rid in rec.getMessage() for rec in caplog.records)


def test_a_caller_request_id_is_echoed(client: TestClient, admin: Headers) -> None:
    r = client.get(f"{BASE}?commitId=abcdef12", headers={**admin, "X-Request-ID": "ci-run-42"})
    assert r.headers["X-Request-ID"] == "ci-run-42"
    r = client.get(f"{BASE}?commitId=abcdef12", headers={**admin, "X-Request-ID": "bad id\x01"})
    assert r.headers["X-Request-ID"] != "bad id\x01"


def test_unknown_path_and_wrong_method_use_the_error_body(client: TestClient) -> None:
    r = client.get("/api/nope")
    assert r.status_code == 404
    assert r.json()["resultCode"] == 404
    r = client.get(f"{BASE}/create")
    assert r.status_code == 405
    assert r.json() == {
        "resultCode": 405,
        "errorMsg": "method not allowed",
        "detail": f"GET is not allowed on {BASE}/create",
    }


def test_openapi_describes_the_four_endpoints_truthfully(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    assert set(paths) == {
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/workflows/{name}/tasks/{id}",
        "/api/workflows/{name}/tasks/{id}/jobs/{job}/log",
        BASE,
        f"{BASE}/create",
        f"{BASE}/id/{{id}}/pipelines/{{name}}/cancel",
        f"{BASE}/id/{{id}}/pipelines/{{name}}/restart",
        "/api/hooks/gitlab",
        "/api/notifications",
        "/api/notifications/{id}/retry",
        "/api/workflows",
        "/api/workflows/{name}",
        "/api/workflows/{name}/tasks",
        "/api/workflows/{name}/tasks/{id}/jobs/{job}/log/raw",
        "/api/session",
    }
    get = paths[BASE]["get"]
    assert {p["name"] for p in get["parameters"]} == {"commitId", "limit"}
    assert get["security"] == [{"bearer": []}, {"x-api-key": []}]
    body_ref = paths[f"{BASE}/create"]["post"]["requestBody"]["content"]["application/json"]
    assert body_ref["schema"] == {"$ref": "#/components/schemas/CreateTaskIn"}
    schemas = doc["components"]["schemas"]
    assert set(schemas["CreateTaskIn"]["required"]) == {"workflow_name", "env_name", "targets"}
    assert schemas["CreateTaskIn"]["additionalProperties"] is False
    assert set(schemas["RepoIn"]["properties"]) == {"repo_name", "branch", "pr"}
    for name, path in paths.items():
        if name in ("/healthz", "/readyz", "/metrics", "/api/session") or name.startswith(
            "/api/workflows"
        ):
            continue
        for op in path.values():
            assert {"400", "401", "500"} <= set(op["responses"])
    item = schemas["TaskItemOut"]["properties"]
    assert {"task_id", "url", "status", "create_time", "start_time", "end_time"} <= set(item)
    assert client.get("/docs").status_code == 200


def test_healthz_needs_no_token(client: TestClient) -> None:
    r = client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
