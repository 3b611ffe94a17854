"""One thread keeps the time for every job of a process, each at its own interval,
from its start to its stop; a few threads write the beats; a failing beat is retried at
the next one."""

import os
import threading
import time
from collections.abc import Callable

from conveyor.domain.jobs import JobResult
from conveyor.executors.heartbeats import WRITERS, Heartbeats


class Beats:
    """A reporter that counts its heartbeats; `fail` makes the next ones raise."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.times: list[float] = []
        self.fail = False
        self.hold = hold
        self.inside = threading.Event()
        self.threads: set[str] = set()
        self.calls = 0

    def heartbeat(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls += 1
        self.inside.set()
        if self.hold is not None:
            self.hold.wait(10)
        self.times.append(time.monotonic())
        if self.fail:
            raise OSError("database is away")

    def claim(self) -> bool:
        return True

    def started(self, pid: int) -> None:
        pass

    def cancel_requested(self) -> bool:
        return False

    def finished(self, result: JobResult) -> None:
        pass


def wait_until(check: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "never got there"
        time.sleep(0.005)


def test_each_job_beats_at_its_own_interval_on_a_few_threads() -> None:
    hearts, fast, slow = Heartbeats(), Beats(), Beats()
    jobs = [Beats() for _ in range(12)]
    keys = [hearts.start_beating(fast, 0.02), hearts.start_beating(slow, 0.2)]
    keys += [hearts.start_beating(job, 0.02) for job in jobs]
    wait_until(lambda: len(fast.times) >= 10 and all(len(j.times) >= 10 for j in jobs))
    assert len(slow.times) < len(fast.times) / 3
    assert len(set().union(*(j.threads for j in [fast, slow, *jobs]))) <= WRITERS
    for key in keys:
        hearts.stop_beating(key)


def test_a_slow_beat_does_not_hold_the_other_jobs_beats() -> None:
    hold = threading.Event()
    hearts, stuck, fine = Heartbeats(), Beats(hold), Beats()
    keys = [hearts.start_beating(stuck, 0.01), hearts.start_beating(fine, 0.01)]
    assert stuck.inside.wait(10)  # its database write hangs
    wait_until(lambda: len(fine.times) >= 5)
    assert stuck.calls == 1  # and it is not sent again while the first is under way
    hold.set()
    for key in keys:
        hearts.stop_beating(key)


def test_no_beat_follows_the_stop() -> None:
    hearts, beats = Heartbeats(), Beats()
    key = hearts.start_beating(beats, 0.01)
    wait_until(lambda: len(beats.times) >= 2)
    hearts.stop_beating(key)
    stopped = len(beats.times)
    other = Beats()  # another job's beats show the thread is still at work
    key2 = hearts.start_beating(other, 0.01)
    wait_until(lambda: len(other.times) >= 5)
    hearts.stop_beating(key2)
    assert len(beats.times) == stopped


def test_a_stop_waits_for_its_beat_under_way() -> None:
    hold = threading.Event()
    hearts, beats = Heartbeats(), Beats(hold)
    key = hearts.start_beating(beats, 0.01)
    assert beats.inside.wait(10)  # a beat is being written
    stopper = threading.Thread(target=hearts.stop_beating, args=(key,))
    stopper.start()
    stopper.join(0.1)
    assert stopper.is_alive()  # held by the beat under way: the job's result waits
    hold.set()
    stopper.join(10)
    assert not stopper.is_alive() and len(beats.times) == 1


def test_a_failing_beat_is_retried_at_the_next_and_the_others_go_on() -> None:
    hearts, failing, fine = Heartbeats(), Beats(), Beats()
    failing.fail = True
    keys = [hearts.start_beating(failing, 0.01), hearts.start_beating(fine, 0.01)]
    wait_until(lambda: len(failing.times) >= 3 and len(fine.times) >= 3)
    for key in keys:
        hearts.stop_beating(key)


def test_a_forked_worker_beats_with_threads_of_its_own() -> None:
    heart = Heartbeats()
    parent = Beats()
    key = heart.start_beating(parent, 0.02)
    wait_until(lambda: parent.calls > 0)
    pid = os.fork()
    if pid == 0:  # the child: none of the parent's threads, nor its jobs
        ok = False
        try:
            child = Beats()
            heart.start_beating(child, 0.02)
            ok = child.inside.wait(10) and "conveyor-heartbeat" in " ".join(child.threads)
        finally:
            os._exit(0 if ok else 1)
    heart.stop_beating(key)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
