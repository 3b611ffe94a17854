"""Who writes next to SQLite, in this process.

SQLite has one writer. Under load every write transaction of the server queues for it:
the runners' claims and results, the scheduler's moves, and the API's creates, cancels
and restarts. Only the last have a person or a client waiting on the answer, so they go
first: a create that queued behind every runner's bookkeeping took several times its
own hold of the writer (docs/benchmarks.md). Among writes of one kind, first come,
first served. A flood of requests does not starve the background: after
`REQUESTS_IN_A_ROW` requests went ahead of a waiting background write, it goes next (a
runner's heartbeat that never got written would have its job failed as lost).
"""

import contextlib
import contextvars
import threading
from collections.abc import Iterator

REQUESTS_IN_A_ROW = 4

# Set for the work of an API request (its thread-pool calls inherit it).
for_request: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "conveyor_write_for_request", default=False
)


class WriterQueue:
    """A reentrant lock whose waiters for a request go before the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._urgent = threading.Condition(self._lock)
        self._background = threading.Condition(self._lock)
        self._owner: int | None = None
        self._depth = 0
        self._urgent_waiting = 0
        self._background_waiting = 0
        self._ahead = 0  # requests served in a row while a background write waited
        self._background_turn = False

    @property
    def waiting(self) -> tuple[int, int]:
        """How many wait now: (for requests, in the background)."""
        with self._lock:
            return self._urgent_waiting, self._background_waiting

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        me = threading.get_ident()
        urgent = for_request.get()
        with self._lock:
            if self._owner == me:
                # Reentrant: a nested write fails on SQLite's busy timeout, as it always
                # has, rather than deadlocking here.
                self._depth += 1
            else:
                if urgent:
                    self._urgent_waiting += 1
                    try:
                        while self._owner is not None or self._background_turn:
                            self._urgent.wait()
                    except BaseException:
                        self._leave_queue(urgent)
                        raise
                    self._urgent_waiting -= 1
                    self._ahead = self._ahead + 1 if self._background_waiting else 0
                else:
                    self._background_waiting += 1
                    try:
                        while self._owner is not None or (
                            self._urgent_waiting and not self._background_turn
                        ):
                            self._background.wait()
                    except BaseException:
                        self._leave_queue(urgent)
                        raise
                    self._background_waiting -= 1
                    self._ahead, self._background_turn = 0, False
                self._owner, self._depth = me, 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                    self._hand_on()

    def _hand_on(self) -> None:
        """The writer is free: wake the one waiter whose turn it is. It re-checks, and
        waits again if another thread took the writer first (whose release wakes the
        next one)."""
        starved = self._background_waiting and self._ahead >= REQUESTS_IN_A_ROW
        if self._urgent_waiting and not starved:
            self._urgent.notify()
        else:
            self._background_turn = bool(self._background_waiting)
            self._background.notify()

    def _leave_queue(self, urgent: bool) -> None:
        """A waiter interrupted: it must not take with it a turn it was woken for."""
        if urgent:
            self._urgent_waiting -= 1
        else:
            self._background_waiting -= 1
            self._background_turn = False
        if self._owner is None:
            self._hand_on()
