"""Schemathesis over the published OpenAPI document, against the app in-process with a
real database and real git repositories: no 5xx, and every answer as documented
(status, content type, body and headers), with a token that may do everything and
without one. A fixed seed and few examples, so every run sends the same requests."""

from collections.abc import Callable
from typing import Any, cast

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import Case

from conveyor.api.app import create_app
from conveyor.wiring import Container
from tests.fixtures import Headers, create_body

OperationCase = Case[Any]  # any operation of the schema
SEED = 20_251_129
MAX_EXAMPLES = 20


def published_document() -> dict[str, Any]:
    # The document depends on the routes only, never on the services, and schemathesis
    # must have it when tests are collected, before any fixture exists.
    return create_app(cast(Container, None)).openapi()


schema = schemathesis.openapi.from_dict(published_document())
schema.config.seed = SEED
schema.config.generation.update(max_examples=MAX_EXAMPLES, database="none")
# "Schema-valid data is accepted" does not hold for this API by contract: a name, branch
# or merge request the configuration does not know is a 400 (spec, error table), and no
# schema can say which names exist.
schema.config.checks.update(excluded_check_names=["positive_data_acceptance"])
# One app and database per operation, shared by its examples on purpose: like a real
# server, later requests meet what earlier ones stored.
shared_fixtures = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def app(container: Container) -> FastAPI:
    return create_app(container)


@pytest.fixture
def token(app: FastAPI, auth: Callable[..., Headers]) -> Headers:
    """Every permission on every workflow, and one task (id 1) to look at and act on."""
    admin = auth("admin")
    with TestClient(app) as client:
        r = client.post("/api/directory/workflowTask/create", json=create_body(), headers=admin)
        assert r.status_code == 200, r.text
    return admin


def call_and_validate(case: OperationCase, app: FastAPI, headers: Headers | None = None) -> None:
    # This test's app, in-process; checks that send requests of their own (a control
    # request without a probe's Content-Type, say) find it on the schema.
    case.operation.app = case.operation.schema.app = app
    # A valid `wait` holds the answer until the task ends, up to a minute, and task 1
    # never runs here: test_task_wait.py covers waiting; invalid values still go as made.
    if case.query and str(case.query.get("wait", "")).isdigit():
        case.query["wait"] = "0"
    case.call_and_validate(headers=headers)


@schema.parametrize()
@shared_fixtures
def test_with_a_token_every_answer_is_documented_and_no_5xx(
    case: OperationCase, app: FastAPI, token: Headers
) -> None:
    call_and_validate(case, app, token)


@schema.parametrize()
@shared_fixtures
def test_without_a_token_every_answer_is_documented_and_no_5xx(
    case: OperationCase, app: FastAPI
) -> None:
    call_and_validate(case, app)


def test_the_fuzzed_document_is_the_one_served(client: TestClient) -> None:
    assert published_document() == client.get("/openapi.json").json()
