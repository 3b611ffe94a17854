"""The HTTP app over the configured services of tests.fixtures."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from conveyor.api.app import create_app
from conveyor.wiring import Container


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), raise_server_exceptions=False) as c:
        yield c
