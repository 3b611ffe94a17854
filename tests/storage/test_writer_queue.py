"""SQLite's writer in this process: a request's write goes before background writes
that queued earlier; otherwise first come, first served; a thread may nest."""

import threading
import time
from collections.abc import Callable

from conveyor.storage.writer_queue import WriterQueue, for_request


def wait_until(check: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "never got there"
        time.sleep(0.001)


class Writers:
    """Threads that take the queue in turn and record the order they got it."""

    def __init__(self, queue: WriterQueue) -> None:
        self.queue = queue
        self.order: list[str] = []
        self.threads: list[threading.Thread] = []

    def start(self, name: str, request: bool) -> None:
        def write() -> None:
            for_request.set(request)
            with self.queue.held():
                self.order.append(name)

        thread = threading.Thread(target=write, name=name)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=10)
            assert not thread.is_alive()


def test_a_request_writes_before_the_background_writes_queued_before_it() -> None:
    queue, held, release = WriterQueue(), threading.Event(), threading.Event()
    holder = threading.Thread(target=lambda: _hold(queue, held, release))
    holder.start()
    assert held.wait(10)
    writers = Writers(queue)
    writers.start("runner-1", request=False)
    writers.start("runner-2", request=False)
    wait_until(lambda: queue.waiting == (0, 2))
    writers.start("create", request=True)
    wait_until(lambda: queue.waiting == (1, 2))
    release.set()
    holder.join(timeout=10)
    writers.join()
    assert writers.order == ["create", "runner-1", "runner-2"]


def test_background_writes_are_served_in_the_order_they_came() -> None:
    queue, held, release = WriterQueue(), threading.Event(), threading.Event()
    holder = threading.Thread(target=lambda: _hold(queue, held, release))
    holder.start()
    assert held.wait(10)
    writers = Writers(queue)
    for i in range(1, 6):
        writers.start(f"runner-{i}", request=False)
        wait_until(lambda: queue.waiting[1] == len(writers.threads))
    release.set()
    holder.join(timeout=10)
    writers.join()
    assert writers.order == [f"runner-{i}" for i in range(1, 6)]


def test_a_thread_holding_the_writer_may_take_it_again() -> None:
    queue = WriterQueue()
    with queue.held(), queue.held():
        assert queue.waiting == (0, 0)
    writers = Writers(queue)  # and it is free again afterwards
    writers.start("next", request=False)
    writers.join()
    assert writers.order == ["next"]


def _hold(queue: WriterQueue, held: threading.Event, release: threading.Event) -> None:
    with queue.held():
        held.set()
        release.wait(10)
