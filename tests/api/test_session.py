"""Sign-in for pages: a token exchanged for an HttpOnly, SameSite=Strict cookie that
ends with the token, at logout or after 12 hours; changes need the CSRF token."""

from fastapi.testclient import TestClient

from conveyor.wiring import Container
from tests.fixtures import WF, FakeClock, Headers, create_body

SESSION = "/api/session"
CREATE = "/api/directory/workflowTask/create"


def sign_in(client: TestClient, token: str) -> dict[str, object]:
    r = client.post(SESSION, json={"token": token})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def fresh_token(container: Container, *roles: str, expires_in_s: int | None = None) -> str:
    token, _ = container.tokens.issue("alice", list(roles or ["admin"]), expires_in_s)
    return token


def test_a_token_becomes_an_httponly_strict_cookie_that_pages_use(
    client: TestClient, container: Container
) -> None:
    r = client.post(SESSION, json={"token": fresh_token(container)})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("conveyor_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Max-Age=43200" in cookie
    assert "Path=/" in cookie
    body = r.json()
    assert (body["user"], body["roles"]) == ("alice", ["admin"])
    assert len(body["csrf_token"]) >= 32
    # The cookie alone reads; the token is not needed again.
    assert client.get("/api/workflows").status_code == 200
    assert client.get(SESSION).json()["user"] == "alice"


def test_a_wrong_expired_or_revoked_token_says_which(
    client: TestClient, container: Container, clock: FakeClock
) -> None:
    for token, detail in (
        ("not-a-token", "malformed token"),
        ("cvy_" + "A" * 43, "unknown token"),
    ):
        r = client.post(SESSION, json={"token": token})
        assert (r.status_code, r.json()["detail"]) == (401, detail)
    expiring = fresh_token(container, expires_in_s=60)
    clock.offset += 61
    r = client.post(SESSION, json={"token": expiring})
    assert (r.status_code, r.json()["detail"]) == (401, "token expired")
    revoked = fresh_token(container)
    info = container.tokens.list()[-1]
    container.tokens.revoke(info.id, "root")
    r = client.post(SESSION, json={"token": revoked})
    assert (r.status_code, r.json()["detail"]) == (401, "token revoked")
    assert "set-cookie" not in r.headers


def test_revoking_the_token_ends_its_sessions(client: TestClient, container: Container) -> None:
    sign_in(client, fresh_token(container))
    container.tokens.revoke(container.tokens.list()[-1].id, "root")
    r = client.get("/api/workflows")
    assert (r.status_code, r.json()["detail"]) == (401, "token revoked")


def test_a_session_ends_after_12_hours_or_with_its_token(
    client: TestClient, container: Container, clock: FakeClock
) -> None:
    sign_in(client, fresh_token(container, expires_in_s=3600))
    clock.offset += 3601  # the token's end comes first
    r = client.get("/api/workflows")
    assert (r.status_code, r.json()["detail"]) == (401, "session expired: sign in again")
    sign_in(client, fresh_token(container))
    clock.offset += 12 * 3600 + 1
    assert client.get("/api/workflows").status_code == 401


def test_changes_from_a_session_need_its_csrf_token(
    client: TestClient, container: Container
) -> None:
    csrf = sign_in(client, fresh_token(container))["csrf_token"]
    r = client.post(CREATE, json=create_body())
    assert (r.status_code, r.json()["detail"]) == (
        403,
        "X-CSRF-Token: missing or not this session's",
    )
    r = client.post(CREATE, json=create_body(), headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    r = client.post(CREATE, json=create_body(), headers={"X-CSRF-Token": str(csrf)})
    assert (r.status_code, r.json()["workflow_name"]) == (200, WF)


def test_signing_out_ends_the_session_and_clears_the_cookie(
    client: TestClient, container: Container
) -> None:
    sign_in(client, fresh_token(container))
    r = client.delete(SESSION)
    assert r.status_code == 204
    assert (
        'conveyor_session=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    )
    r = client.get("/api/workflows")
    assert (r.status_code, r.json()["detail"]) == (401, "no Authorization header")
    # A page asks first whether it has a session: none is no error, a dead one says why.
    assert (client.get(SESSION).status_code, client.get(SESSION).content) == (204, b"")
    client.cookies.set("conveyor_session", "A" * 43)
    r = client.get("/api/workflows")
    assert (r.status_code, r.json()["detail"]) == (401, "session ended: sign in again")
    assert client.get(SESSION).json()["detail"] == "session ended: sign in again"


def test_the_api_keeps_taking_tokens_in_headers_over_a_cookie(
    client: TestClient, container: Container, admin: Headers
) -> None:
    sign_in(client, fresh_token(container, "viewer"))
    # With a header, the header decides (and no CSRF token is asked for).
    assert client.post(CREATE, json=create_body(), headers=admin).status_code == 200


def test_a_bad_sign_in_body_is_a_400_naming_the_field(client: TestClient) -> None:
    r = client.post(SESSION, json={"token": "x", "extra": 1})
    assert (r.status_code, r.json()["detail"]) == (400, "extra: unknown field")
    r = client.post(SESSION, json={})
    assert (r.status_code, r.json()["detail"]) == (400, "token: required")
