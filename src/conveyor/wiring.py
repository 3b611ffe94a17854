"""The composition root: builds the stores and services for one config."""

import time
from dataclasses import dataclass

from conveyor.scm.git import GitCli
from conveyor.services.auth import Authorizer, TokenService
from conveyor.services.ports import Clock, RefResolver
from conveyor.services.tasks import TaskService
from conveyor.settings import Config
from conveyor.storage.db import Database
from conveyor.storage.task_store import SqlTaskStore
from conveyor.storage.token_store import SqlTokenStore


def unix_now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class Container:
    config: Config
    db: Database
    tasks: TaskService
    tokens: TokenService


def build_container(
    config: Config,
    *,
    db: Database | None = None,
    resolver: RefResolver | None = None,
    clock: Clock = unix_now,
) -> Container:
    db = db or Database.from_url(config.database_url)
    authorizer = Authorizer(config.roles, list(config.workflows))
    return Container(
        config=config,
        db=db,
        tasks=TaskService(config, SqlTaskStore(db), resolver or GitCli(), authorizer, clock),
        tokens=TokenService(SqlTokenStore(db), config.roles, clock),
    )
