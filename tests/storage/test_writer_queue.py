"""SQLite's writer in this process: a request's write goes before background writes
that queued earlier; otherwise first come, first served; a thread may nest."""

import threading
import time
from collections.abc import Callable

from conveyor.storage.writer_queue import REQUESTS_IN_A_ROW, WriterQueue, for_request


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


def test_a_flood_of_requests_lets_a_waiting_background_write_through() -> None:
    # A runner's heartbeat starved by creates would have its job failed as lost.
    queue, held, release = WriterQueue(), threading.Event(), threading.Event()
    holder = threading.Thread(target=lambda: _hold(queue, held, release))
    holder.start()
    assert held.wait(10)
    writers = Writers(queue)
    writers.start("heartbeat", request=False)
    wait_until(lambda: queue.waiting == (0, 1))
    for i in range(1, REQUESTS_IN_A_ROW + 3):
        writers.start(f"create-{i}", request=True)
        wait_until(lambda: queue.waiting[0] == len(writers.threads) - 1)
    release.set()
    holder.join(timeout=10)
    writers.join()
    first = [f"create-{i}" for i in range(1, REQUESTS_IN_A_ROW + 1)]
    rest = [f"create-{i}" for i in range(REQUESTS_IN_A_ROW + 1, REQUESTS_IN_A_ROW + 3)]
    assert writers.order == [*first, "heartbeat", *rest]


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


def test_many_writers_of_both_kinds_hold_it_one_at_a_time_and_all_get_through() -> None:
    queue = WriterQueue()
    inside: list[str] = []
    overlaps: list[list[str]] = []
    served = {True: 0, False: 0}

    def write(request: bool) -> None:
        for_request.set(request)
        for _ in range(200):
            with queue.held():
                inside.append(threading.current_thread().name)
                if len(inside) > 1:
                    overlaps.append(list(inside))
                served[request] += 1
                inside.pop()

    threads = [threading.Thread(target=write, args=(i % 2 == 0,), name=f"w{i}") for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a writer never got its turn"
    assert overlaps == []
    assert served == {True: 800, False: 800}
    assert queue.waiting == (0, 0)
