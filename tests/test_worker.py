"""`conveyor worker` exits non-zero when Celery stops without being asked to, so that a
supervisor that restarts failed workers (systemd's Restart=on-failure) starts it again."""

from collections.abc import Callable
from typing import Any

import pytest

from conveyor import worker
from conveyor.settings import Config
from conveyor.storage.db import Database


class FakeCelery:
    """Celery as seen by run_worker: it registers the task, then runs until it stops."""

    def __init__(self, ends: Callable[[], None]) -> None:
        self._ends = ends

    def task(self, **_: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
        return lambda fn: fn

    def worker_main(self, argv: list[str]) -> None:
        self._ends()


def run_with_celery_that(
    ends: Callable[[], None], config: Config, database: Database, monkeypatch: pytest.MonkeyPatch
) -> object:
    celery_config = config.model_copy(
        update={
            "executor": "celery",
            "broker_url": "redis://127.0.0.1:1/0",
            "database_url": database.engine.url.render_as_string(hide_password=False),
        }
    )
    monkeypatch.setattr(worker, "celery_app", lambda *_: FakeCelery(ends))
    with pytest.raises(SystemExit) as info:
        worker.run_worker(celery_config, [], 1)
    return info.value.code


def test_a_worker_that_stops_on_its_own_exits_non_zero(
    config: Config, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What Celery does after kombu's "Unrecoverable error": it returns, or exits 0.
    assert run_with_celery_that(lambda: None, config, database, monkeypatch) == 1

    def exits_zero() -> None:
        raise SystemExit(0)

    assert run_with_celery_that(exits_zero, config, database, monkeypatch) == 1


def test_a_worker_that_fails_keeps_its_exit_code(
    config: Config, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exits_two() -> None:
        raise SystemExit(2)

    assert run_with_celery_that(exits_two, config, database, monkeypatch) == 2
