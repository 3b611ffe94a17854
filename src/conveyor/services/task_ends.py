"""Requests that wait for a task's end, woken when the scheduler records it.

The scheduler (a thread of the server) records every task's end, also with celery, so
the server process is where the end is known first. A request that waits registers an
asyncio.Event on its loop; the scheduler's thread sets it with call_soon_threadsafe.
Every end gets a sequence number, and the last few thousand are remembered by task: a
request notes the number before it first reads the task and, once registered, knows
without a second read whether the task ended in between. Waiters also re-read the
task now and then, so an end told by nothing in this process (another server on the
same database) is still seen.
"""

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from conveyor.services.ports import TaskEvents

_Key = tuple[str, int]
_Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Event]
# Ends remembered for requests between their first read and their registration: that
# gap is one read, so a few thousand ends cover any realistic burst.
REMEMBERED_ENDS = 4096
# More waiting requests than this are answered at once: each holds a connection.
MAX_WAITERS = 1000


class TaskEnds:
    """TaskEvents that wakes the requests waiting for a task to end."""

    def __init__(self, max_waiters: int = MAX_WAITERS) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[_Key, list[_Waiter]] = {}
        self._count = 0
        self._max = max_waiters
        self._sequence = 0
        self._ended: OrderedDict[_Key, int] = OrderedDict()
        self.stopping = False

    def task_created(self, workflow: str) -> None:
        pass

    def task_finished(
        self, workflow: str, task_id: int, status: str, seconds: float | None
    ) -> None:
        key = (workflow, task_id)
        with self._lock:
            self._sequence += 1
            self._ended[key] = self._sequence
            self._ended.move_to_end(key)
            if len(self._ended) > REMEMBERED_ENDS:
                self._ended.popitem(last=False)
            waiting = list(self._waiters.get(key, ()))
        _wake(waiting)

    def sequence(self) -> int:
        """The number of the last end recorded: note it before reading a task."""
        with self._lock:
            return self._sequence

    @contextmanager
    def watching(self, workflow: str, task_id: int, since: int) -> Iterator[asyncio.Event | None]:
        """An event set when the task ends, from now until the block is left; set at
        once if it ended after `since` (a `sequence()`). None: too many requests wait
        already, or the server is stopping; answer without waiting."""
        key = (workflow, task_id)
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            admitted = self._count < self._max and not self.stopping
            if admitted:
                self._waiters.setdefault(key, []).append(entry)
                self._count += 1
                if self._ended.get(key, 0) > since:
                    entry[1].set()
        if not admitted:
            yield None
            return
        try:
            yield entry[1]
        finally:
            with self._lock:
                left = self._waiters[key]
                left.remove(entry)
                self._count -= 1
                if not left:
                    del self._waiters[key]

    def stop(self) -> None:
        """The server is stopping: every waiting request answers now, no new one waits."""
        with self._lock:
            self.stopping = True
            waiting = [w for ws in self._waiters.values() for w in ws]
        _wake(waiting)

    def waiting(self) -> int:
        with self._lock:
            return self._count


def _wake(waiting: list[_Waiter]) -> None:
    for loop, ended in waiting:
        with contextlib.suppress(RuntimeError):  # a closed loop: the server is stopping
            loop.call_soon_threadsafe(ended.set)


class AllTaskEvents:
    """Tells each of several TaskEvents, in order."""

    def __init__(self, listeners: Sequence[TaskEvents]) -> None:
        self._listeners = tuple(listeners)

    def task_created(self, workflow: str) -> None:
        for listener in self._listeners:
            listener.task_created(workflow)

    def task_finished(
        self, workflow: str, task_id: int, status: str, seconds: float | None
    ) -> None:
        for listener in self._listeners:
            listener.task_finished(workflow, task_id, status, seconds)
