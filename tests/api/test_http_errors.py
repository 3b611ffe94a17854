"""Wrong methods and unknown paths answer like every other error: the documented JSON
body, and for 405 the `Allow` header naming the methods the path has."""

import http.client
import json
from contextlib import closing

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import LiveServer
from tests.fixtures import WF, Headers

BASE = "/api/directory/workflowTask"
CANCEL = f"{BASE}/id/1/pipelines/{WF}/cancel"
DETAIL = f"/api/workflows/{WF}/tasks/1"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", f"{BASE}/create", "POST"),
        ("PUT", f"{BASE}/create", "POST"),
        ("POST", BASE, "GET, HEAD"),
        ("DELETE", CANCEL, "POST"),
        ("PATCH", DETAIL, "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("POST", "/static/task.js", "GET, HEAD"),
        ("OPTIONS", BASE, "GET, HEAD"),
        ("OPTIONS", f"{BASE}/create", "POST"),
    ],
)
def test_a_wrong_method_is_405_with_allow_and_the_error_body(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    r = client.request(method, path)
    assert r.status_code == 405
    assert r.headers["Allow"] == allow
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "resultCode": 405,
        "errorMsg": "method not allowed",
        "detail": f"{method} is not allowed on {path}",
    }


def test_head_of_a_post_route_is_405_without_a_body(client: TestClient) -> None:
    r = client.head(f"{BASE}/create")
    assert (r.status_code, r.headers["Allow"], r.content) == (405, "POST", b"")


@pytest.mark.parametrize(
    "path",
    [
        "/api/nope",
        "/api/directory/workflowTask/id/1/pipelines",
        "/static/nope.js",
        "/static/task.html",
        "/static/routes.py",
        "/static/%2e%2e%2fsettings.py",
        "/workflows/x/tasks",
    ],
)
def test_an_unknown_path_is_the_json_404(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert (body["resultCode"], body["errorMsg"]) == (404, "task not found")
    assert body["detail"].startswith("no such path: GET /")


def test_head_answers_like_get_without_a_body(client: TestClient, admin: Headers) -> None:
    for path, headers, status in [
        ("/healthz", {}, 200),
        (f"{BASE}?commitId=abcdef12", admin, 200),
        (f"{BASE}?commitId=abcdef12", {}, 401),
        ("/static/task.js", {}, 200),
        ("/static/nope.js", {}, 404),
    ]:
        get, head = client.get(path, headers=headers), client.head(path, headers=headers)
        assert (head.status_code, head.content) == (status, b""), path
        assert get.status_code == status
        assert head.headers["content-type"] == get.headers["content-type"]


def test_head_over_http_sends_headers_only_and_the_connection_goes_on(
    live_server: LiveServer, admin: Headers
) -> None:
    """A body after a HEAD answer would be read as the start of the next response."""
    lookup = f"{BASE}?commitId=abcdef12"
    with closing(
        http.client.HTTPConnection(live_server.host, live_server.port, timeout=30)
    ) as conn:
        conn.request("HEAD", lookup, headers=admin)
        head = conn.getresponse()
        assert (head.status, head.read()) == (200, b"")
        assert head.getheader("content-length") == "2"  # what GET would send: []
        conn.request("GET", lookup, headers=admin)
        get = conn.getresponse()
        assert (get.status, json.loads(get.read())) == (200, [])
