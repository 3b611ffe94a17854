# mypy: disable-error-code="no-untyped-call"
# (kombu's Hub and Timer, which the last test drives, have no type hints)
"""`conveyor worker` exits non-zero when Celery stops without being asked to, so that a
supervisor that restarts failed workers (systemd's Restart=on-failure) starts it again;
and a signal reaches it at once, not at its event loop's next timer."""

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from kombu.asynchronous import Hub
from kombu.asynchronous.timer import Timer

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

    def close(self) -> None:
        pass


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


def test_a_signal_ends_the_loops_poll_at_once_also_after_a_reset() -> None:
    """Celery's loop (kombu's hub) polls until its next timer (at most 10 s), and acts on
    a signal only once the poll returns. With the worker's wake, a signal ends the poll
    at once, long before the timer 30 s away. A reset (a lost broker connection) drops
    the loop's readers; the next pass puts the wake back."""
    hub = Hub(Timer(max_interval=10.0))  # as Celery's worker makes it
    fired: list[str] = []
    hub.call_later(30, fired.append, "timer")
    signals: list[int] = []
    before_handler = signal.signal(signal.SIGUSR1, lambda signum, _: signals.append(signum))
    before_fd = signal.set_wakeup_fd(-1)
    reader, writer = worker.wake_on_signals(hub)
    try:
        for reset in (False, True):
            if reset:
                hub.reset()
            passes = hub.create_loop()
            os.kill(os.getpid(), signal.SIGUSR1)
            began = time.monotonic()
            next(passes)
            assert time.monotonic() - began < 5  # not the poll's 10 s
            assert signals == [signal.SIGUSR1] * (2 if reset else 1)
            assert fired == []
    finally:
        signal.set_wakeup_fd(before_fd)
        signal.signal(signal.SIGUSR1, before_handler)
        reader.close()
        writer.close()
        hub.close()
