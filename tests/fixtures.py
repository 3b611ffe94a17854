"""A configured Conveyor (services over real git repositories and a real database)."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conveyor.api.app import create_app
from conveyor.config_file import parse_config
from conveyor.settings import Config
from conveyor.storage.db import Database
from conveyor.wiring import Container, build_container, unix_now
from tests.conftest import GitRepo, RepoFactory

CONFIG = """
public_url: http://conveyor.test/
repos:
  voting-app: {{url: "{voting}", default_branch: master}}
  dyliu: {{url: "{dyliu}"}}
services:
  redis3:
    build:
      repos: [voting-app, dyliu]
      script: make build
      variables: {{FLAVOUR: plain, SIZE: "", MODE: ""}}
    deploy: {{script: ./deploy.sh}}
  web:
    build: {{repos: [dyliu], script: make web}}
    deploy: {{script: ./deploy.sh}}
envs:
  dev: {{vars: {{NAMESPACE: dev}}}}
  staging: {{}}
  prod: {{}}
workflows:
  autoproject-workflow-dev: {{env: dev, envs: [staging], services: [redis3, web]}}
  team-b-deploy: {{env: prod, services: [web]}}
roles:
  admin: {{permissions: [task:view, task:create, task:restart, task:cancel], workflows: ["*"]}}
  viewer: {{permissions: [task:view], workflows: ["*"]}}
  creator: {{permissions: [task:create], workflows: ["*"]}}
  team-a:
    permissions: [task:view, task:create, task:restart, task:cancel]
    workflows: ["autoproject-*"]
"""

WF = "autoproject-workflow-dev"


class FakeClock:
    """Real time that a test can move forward (to expire a token, say)."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return unix_now() + self.offset


@dataclass
class Repos:
    voting: GitRepo
    dyliu: GitRepo


@pytest.fixture
def repos(make_repo: RepoFactory) -> Repos:
    voting = make_repo("voting-app", default_branch="master")
    dyliu = make_repo("dyliu")
    return Repos(voting=voting, dyliu=dyliu)


@pytest.fixture
def config(repos: Repos, tmp_path: Path) -> Config:
    text = CONFIG.format(voting=repos.voting.url, dyliu=repos.dyliu.url)
    return parse_config(text, base=tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def container(config: Config, database: Database, clock: FakeClock) -> Container:
    return build_container(config, db=database, clock=clock)


Headers = dict[str, str]


@pytest.fixture
def auth(container: Container) -> Callable[..., Headers]:
    """auth("admin") -> headers carrying a fresh token with that role."""

    def issue(*roles: str, user: str = "alice", scheme: str = "Bearer") -> Headers:
        token, _ = container.tokens.issue(user, list(roles), None)
        return {"Authorization": f"{scheme} {token}"}

    return issue


@pytest.fixture
def admin(auth: Callable[..., Headers]) -> Headers:
    return auth("admin")


def create_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "workflow_name": WF,
        "env_name": "dev",
        "targets": [
            {
                "name": "redis3",
                "build": {
                    "repos": [
                        {"repo_name": "voting-app", "branch": "master", "pr": 0},
                        {"repo_name": "dyliu", "branch": "main"},
                    ]
                },
            }
        ],
    }
    body.update(overrides)
    return body


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), raise_server_exceptions=False) as c:
        yield c
