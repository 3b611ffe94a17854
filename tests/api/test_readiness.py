"""A database or broker that cannot be reached: 503 with the documented body and a
Retry-After, /readyz naming what failed, /healthz still alive."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from conveyor.api.app import create_app
from conveyor.settings import Config
from conveyor.storage import migrate
from conveyor.storage.db import Database
from conveyor.wiring import build_container
from tests.fixtures import create_body
from tests.server import free_port

BASE = "/api/directory/workflowTask"
NOBODY_HOME = "postgresql+psycopg://postgres@127.0.0.1:{port}/conveyor"


@pytest.fixture
def down_client(config: Config) -> Iterator[TestClient]:
    """A server whose PostgreSQL is down: nothing listens on its port."""
    url = NOBODY_HOME.format(port=free_port())
    container = build_container(config.model_copy(update={"database_url": url}))
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        yield client
    container.db.dispose()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{BASE}?commitId=abcdef12"),
        ("POST", f"{BASE}/create"),
        ("POST", f"{BASE}/id/1/pipelines/x/cancel"),
        ("GET", "/api/workflows/x/tasks/1"),
    ],
)
def test_a_database_that_is_down_is_a_503_to_retry_not_a_500(
    down_client: TestClient, method: str, path: str
) -> None:
    r = down_client.request(
        method,
        path,
        json=create_body() if method == "POST" else None,
        headers={"Authorization": "Bearer cvy_" + "a" * 43},
    )
    assert r.status_code == 503
    body = r.json()
    assert (body["resultCode"], body["errorMsg"]) == (503, "service unavailable")
    assert body["detail"].startswith("the database cannot be reached; try again shortly")
    assert r.headers["Retry-After"] == "5"


def test_readyz_names_the_database_healthz_stays_alive(down_client: TestClient) -> None:
    assert down_client.get("/healthz").status_code == 200
    r = down_client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"].startswith("cannot be reached: OperationalError")
    assert body["checks"]["migrations"] == "unknown: the database cannot be reached"


def test_readyz_is_ready_with_a_migrated_database(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}


def test_readyz_says_when_the_schema_is_behind(config: Config, empty_database_url: str) -> None:
    db = Database.from_url(empty_database_url)
    migrate.upgrade(db, "0004")
    container = build_container(config.model_copy(update={"database_url": empty_database_url}))
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        r = client.get("/readyz")
    container.db.dispose()
    db.dispose()
    assert r.status_code == 503
    assert r.json()["checks"]["migrations"] == (
        f"at 0004, not at {migrate.heads()[0]}: run conveyor serve to migrate"
    )


def test_readyz_names_a_broker_that_is_down(config: Config, database: Database) -> None:
    celery = config.model_copy(
        update={"executor": "celery", "broker_url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    container = build_container(celery, db=database, run_jobs=True)
    try:
        checks = container.readiness()
    finally:
        assert container.executor is not None
        container.executor.shutdown(wait=False)
    assert checks["database"] == "ok"
    assert checks["broker"].startswith("cannot be reached")
