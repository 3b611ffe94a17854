"""Who writes next to SQLite, in this process.

SQLite has one writer. Under load every write transaction of the server queues for it:
the runners' claims and results, the scheduler's moves, and the API's creates, cancels
and restarts. Only the last have a person or a client waiting on the answer, so they go
first: a create that queued behind every runner's bookkeeping took several times its
own hold of the writer (docs/benchmarks.md). Among writes of one kind, first come,
first served. Background writes wait at most for the requests that queue meanwhile;
each holds the writer for about a millisecond.
"""

import contextlib
import contextvars
import threading
from collections.abc import Iterator

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
                        while self._owner is not None:
                            self._urgent.wait()
                    finally:
                        self._urgent_waiting -= 1
                else:
                    self._background_waiting += 1
                    try:
                        while self._owner is not None or self._urgent_waiting:
                            self._background.wait()
                    finally:
                        self._background_waiting -= 1
                self._owner, self._depth = me, 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                    # One waiter at a time: it re-checks, and waits again if another
                    # thread took the writer first (its release wakes the next one).
                    if self._urgent_waiting:
                        self._urgent.notify()
                    else:
                        self._background.notify()
