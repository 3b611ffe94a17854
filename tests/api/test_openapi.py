"""The published OpenAPI document says what the routes really take and answer."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from conveyor.api.errors import MESSAGES
from tests.fixtures import WF, Headers

BASE = "/api/directory/workflowTask"
LOG = "/api/workflows/{name}/tasks/{id}/jobs/{job}/log"
STATUSES = {
    ("get", BASE): {"200", "400", "401", "500", "503"},
    ("post", f"{BASE}/create"): {"200", "400", "401", "403", "413", "415", "500", "503"},
    ("post", f"{BASE}/id/{{id}}/pipelines/{{name}}/cancel"): {
        "200", "400", "401", "403", "404", "409", "500", "503",
    },
    ("post", f"{BASE}/id/{{id}}/pipelines/{{name}}/restart"): {
        "200", "400", "401", "403", "404", "409", "500", "503",
    },
    ("get", "/api/workflows/{name}/tasks/{id}"): {
        "200", "400", "401", "403", "404", "500", "503",
    },
    ("get", LOG): {"200", "400", "401", "403", "404", "500", "503"},
    ("post", "/api/hooks/gitlab"): {"200", "400", "401", "413", "415", "500", "503"},
    ("get", "/api/notifications"): {"200", "400", "401", "500", "503"},
    ("post", "/api/notifications/{id}/retry"): {
        "200", "400", "401", "403", "404", "409", "500", "503",
    },
    ("get", "/api/workflows"): {"200", "401", "500", "503"},
    ("get", "/api/workflows/{name}"): {"200", "400", "401", "403", "500", "503"},
    ("get", "/api/workflows/{name}/tasks"): {"200", "400", "401", "403", "500", "503"},
    ("get", f"{LOG}/raw"): {"200", "400", "401", "403", "404", "500", "503"},
    ("post", "/api/session"): {"200", "400", "401", "413", "415", "500", "503"},
    ("get", "/api/session"): {"200", "204", "401", "500", "503"},
    ("delete", "/api/session"): {"204", "500", "503"},
    ("get", "/healthz"): {"200"},
    ("get", "/metrics"): {"200", "401", "500", "503"},
    ("get", "/readyz"): {"200", "503"},
}  # fmt: skip


@pytest.fixture
def doc(client: TestClient) -> dict[str, Any]:
    found: dict[str, Any] = client.get("/openapi.json").json()
    return found


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): op for path, ops in doc["paths"].items() for method, op in ops.items()}


def test_each_operation_lists_exactly_the_statuses_it_answers(doc: dict[str, Any]) -> None:
    found = {key: set(op["responses"]) for key, op in operations(doc).items()}
    assert found == STATUSES
    for key, op in operations(doc).items():
        for status, response in op["responses"].items():
            if status not in ("200", "204") and key[1] != "/readyz":
                body = response["content"]["application/json"]
                assert body["schema"] == {"$ref": "#/components/schemas/ErrorOut"}, key
                # An example of the exact body, with the spec's errorMsg for the status.
                example = body["example"]
                assert example["resultCode"] == int(status), key
                assert example["errorMsg"] == MESSAGES[int(status)], key
                assert example["detail"], key


def test_no_422_and_no_validation_error_schemas(doc: dict[str, Any]) -> None:
    assert "422" not in str(doc["paths"])
    assert not {"HTTPValidationError", "ValidationError"} & set(doc["components"]["schemas"])


def test_authentication_is_a_security_scheme_on_every_api_operation(
    doc: dict[str, Any],
) -> None:
    assert doc["components"]["securitySchemes"] == {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <token>`",
        },
        "x-api-key": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Authorization: X-API-KEY <token>`: the whole header value",
        },
        "gitlab-token": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Gitlab-Token",
            "description": "the hook's secret token, as configured in gitlab.webhook_secret",
        },
        "metrics-token": {
            "type": "http",
            "scheme": "bearer",
            "description": "the config's metrics_token, when one is set",
        },
    }
    for (_, path), op in operations(doc).items():
        if path in ("/healthz", "/readyz"):
            assert "security" not in op
            continue
        if path == "/metrics":
            assert op["security"] == [{"metrics-token": []}, {}]  # Prometheus's, if configured
            continue
        if path == "/api/session":
            # Sign-in takes the token in its body; the session is the cookie it sets.
            assert "security" not in op
            continue
        if path == "/api/hooks/gitlab":
            # GitLab's own token; its event and delivery headers are parameters.
            assert op["security"] == [{"gitlab-token": []}]
            assert {p["name"] for p in op["parameters"]} == {
                "X-Gitlab-Event",
                "X-Gitlab-Event-UUID",
                "Idempotency-Key",
            }
            continue
        assert op["security"] == [{"bearer": []}, {"x-api-key": []}], path
        assert all(p["in"] != "header" for p in op.get("parameters", [])), path
    assert "security" not in doc  # nothing global: /healthz needs no token


def parameters(doc: dict[str, Any], method: str, path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in doc["paths"][path][method]["parameters"]}


def test_path_and_query_values_are_typed_as_what_the_routes_accept(
    doc: dict[str, Any],
) -> None:
    log = parameters(doc, "get", LOG)
    assert log["id"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}
    assert log["job"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}
    assert log["offset"]["schema"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 10**15 - 1,
        "default": 0,
    }
    assert (log["offset"]["in"], log["offset"]["required"]) == ("query", False)
    assert log["name"]["schema"] == {"type": "string", "minLength": 1, "maxLength": 200}
    cancel = parameters(doc, "post", f"{BASE}/id/{{id}}/pipelines/{{name}}/cancel")
    assert cancel["id"]["schema"]["type"] == "integer"
    lookup = parameters(doc, "get", BASE)
    assert lookup["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        (f"/api/workflows/{WF}/tasks/abc", "id: 'abc' is not a positive task id"),
        (f"/api/workflows/{WF}/tasks/0", "id: '0' is not a positive task id"),
        (f"/api/workflows/{WF}/tasks/1/jobs/-1/log", "job: '-1' is not a job id"),
        (
            f"/api/workflows/{WF}/tasks/1/jobs/1/log?offset=1e3",
            "offset: '1e3' must be a whole number of bytes",
        ),
        (f"/api/workflows/{WF}/tasks/{10**18}", f"id: '{10**18}' is not a positive task id"),
    ],
)
def test_values_outside_the_published_types_are_still_the_routes_400(
    client: TestClient, admin: Headers, path: str, detail: str
) -> None:
    """Typed in the document, checked by the route after authentication (ADR 0002)."""
    assert client.get(path).status_code == 401
    r = client.get(path, headers=admin)
    assert (r.status_code, r.json()["detail"]) == (400, detail)


def test_the_log_is_text_with_its_headers_documented(doc: dict[str, Any]) -> None:
    ok = doc["paths"][LOG]["get"]["responses"]["200"]
    assert ok["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert set(ok["headers"]) == {
        "X-Next-Offset", "X-Log-Size", "X-Job-Status", "X-Log-Complete",
        "X-Log-Start", "X-Log-Line",
    }  # fmt: skip
    assert ok["headers"]["X-Log-Complete"]["schema"]["enum"] == ["true", "false"]


def test_the_create_body_publishes_its_limits(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert schemas["CreateTaskIn"]["properties"]["targets"]["maxItems"] == 100
    assert schemas["RepoIn"]["properties"]["branch"]["maxLength"] == 255
    assert schemas["BuildIn"]["properties"]["repos"]["maxItems"] == 50
    assert schemas["TargetIn"]["properties"]["envs"]["maxItems"] == 100
    value = schemas["EnvVarIn"]["properties"]["value"]
    assert value["maxLength"] == 4096
    assert "\\u0000" in value["pattern"]


def test_the_four_endpoints_of_the_document_are_described_by_its_rules(
    doc: dict[str, Any],
) -> None:
    ops = operations(doc)
    for key, words in (
        (("get", BASE), "at least 8 hex"),
        (("post", f"{BASE}/create"), "resolved to a commit now"),
        (("post", f"{BASE}/id/{{id}}/pipelines/{{name}}/cancel"), "SIGTERM"),
        (("post", f"{BASE}/id/{{id}}/pipelines/{{name}}/restart"), "only the jobs"),
    ):
        assert words in ops[key]["description"], key
