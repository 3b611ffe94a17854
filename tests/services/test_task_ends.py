"""TaskEnds: what wakes a request waiting for a task's end, and what it refuses."""

import asyncio
import threading

from conveyor.services.task_ends import TaskEnds


def test_an_end_told_from_another_thread_wakes_the_waiter() -> None:
    ends = TaskEnds()

    async def wait() -> bool:
        with ends.watching("wf", 1, ends.sequence()) as ended:
            assert ended is not None and not ended.is_set()
            threading.Thread(target=ends.task_finished, args=("wf", 1, "passed", 1.0)).start()
            await asyncio.wait_for(ended.wait(), 10)
            return ended.is_set()

    assert asyncio.run(wait())
    assert ends.waiting() == 0


def test_an_end_between_the_first_read_and_the_registration_is_not_missed() -> None:
    ends = TaskEnds()
    before_first_read = ends.sequence()
    ends.task_finished("wf", 1, "passed", None)  # while the request read the task
    ends.task_finished("wf", 2, "passed", None)

    async def registered() -> tuple[bool, bool]:
        with (
            ends.watching("wf", 1, before_first_read) as one,
            ends.watching("wf", 3, before_first_read) as three,
        ):
            assert one is not None and three is not None
            return one.is_set(), three.is_set()

    assert asyncio.run(registered()) == (True, False)


def test_past_the_cap_and_once_stopping_a_request_does_not_wait() -> None:
    ends = TaskEnds(max_waiters=1)

    async def run() -> None:
        with ends.watching("wf", 1, 0) as first, ends.watching("wf", 2, 0) as second:
            assert first is not None and second is None
            ends.stop()  # the server is asked to stop: the waiting request answers
            await asyncio.wait_for(first.wait(), 10)
        with ends.watching("wf", 3, 0) as after:
            assert after is None

    asyncio.run(run())
    assert ends.waiting() == 0
