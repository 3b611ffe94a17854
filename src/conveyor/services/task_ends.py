"""Requests that wait for a task's end, woken when the scheduler records it.

The scheduler (a thread of the server) records every task's end, also with celery, so
the server process is where the end is known first. A request that waits registers an
asyncio.Event on its loop; the scheduler's thread sets it with call_soon_threadsafe.
Waiters also re-read the task from time to time: an end told by nothing in this process
(another server on the same database) is still seen.
"""

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from conveyor.services.ports import TaskEvents

_Key = tuple[str, int]


class TaskEnds:
    """TaskEvents that wakes the requests waiting for a task to end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[_Key, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def task_created(self, workflow: str) -> None:
        pass

    def task_finished(
        self, workflow: str, task_id: int, status: str, seconds: float | None
    ) -> None:
        with self._lock:
            waiting = list(self._waiters.get((workflow, task_id), ()))
        for loop, ended in waiting:
            with contextlib.suppress(RuntimeError):  # a closed loop: the server is stopping
                loop.call_soon_threadsafe(ended.set)

    @contextmanager
    def watching(self, workflow: str, task_id: int) -> Iterator[asyncio.Event]:
        """An event set when the task ends, from now until the block is left. Read the
        task's state after entering: an end before that is what the read shows."""
        key = (workflow, task_id)
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(key, []).append(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                left = self._waiters[key]
                left.remove(entry)
                if not left:
                    del self._waiters[key]

    def waiting(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._waiters.values())


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
