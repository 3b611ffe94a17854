"""The lookup read that runs with its token (ADR 0004): the token's row, and tasks only
for a valid token."""

from fastapi.testclient import TestClient

from conveyor.services.auth import hash_token
from conveyor.storage.task_store import SqlTaskStore, lookups_with_token
from conveyor.wiring import Container
from tests.fixtures import FakeClock, Headers, Repos, create_body


def test_the_tasks_read_beside_a_token_come_only_for_a_valid_one(
    client: TestClient, admin: Headers, container: Container, repos: Repos, clock: FakeClock
) -> None:
    r = client.post("/api/directory/workflowTask/create", json=create_body(), headers=admin)
    assert r.status_code == 200
    sha = repos.voting.head("master")
    store = SqlTaskStore(container.db)

    def found(token: str) -> int:
        digest = hash_token(token)
        read = store.by_commit(sha, None, 100, token=(digest, clock()))
        rows, tasks = lookups_with_token(container.db.read_rows(*read))
        assert (rows == []) == (token == unknown)
        assert all(row[-1] == digest for row in rows)  # the token's row comes with its hash
        assert len(rows) <= 1
        return len(tasks)

    valid, _ = container.tokens.issue("alice", ["admin"], None)
    revoked, info = container.tokens.issue("bob", ["admin"], None)
    container.tokens.revoke(info.id, actor="admin")
    expiring, _ = container.tokens.issue("carol", ["admin"], 60)
    unknown = "cvy_" + "x" * 43
    assert found(valid) == 1
    assert found(unknown) == 0
    assert found(revoked) == 0
    assert found(expiring) == 1
    clock.offset += 61
    assert found(expiring) == 0
