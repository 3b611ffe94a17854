"""Heartbeats of the jobs a process runs: one thread beats for all of them.

A job's runner must look alive from its claim to its result, whatever it is doing (a
long checkout, the grace period of a stop). A thread of its own per job did that, but
starting it and joining it cost two hand-offs between threads on every job's path, and
under load each waited for the GIL (docs/benchmarks.md). One thread per process now
beats for every job registered with it, each at its own interval.

The beats themselves are written by a few threads of a pool, so that a database that
answers slowly delays a process's jobs by a share of it, not by its sum: one thread
writing for a worker with concurrency 32 would take 32 times a slow write's time.
"""

import itertools
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conveyor.executors.reporting import JobReporter

logger = logging.getLogger("conveyor.runner")

WRITERS = 4


class Heartbeats:
    def __init__(self) -> None:
        self._reset()
        # A forked worker inherits none of the threads, nor the jobs to beat for, and
        # maybe a lock one of them held.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # the heart waits for new jobs
        self._beat_done = threading.Condition(self._lock)  # stop_beating waits for a beat
        # key -> (next beat, monotonic; interval; whose)
        self._due: dict[int, tuple[float, float, JobReporter]] = {}
        self._keys = itertools.count()
        self._wakes_at = float("inf")
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._beating: set[int] = set()  # keys whose beat is under way

    def start_beating(self, reporter: JobReporter, interval_s: float) -> int:
        """Beat for `reporter` every `interval_s`, from now until `stop_beating(key)`."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._pool = self._pool or ThreadPoolExecutor(
                    WRITERS, thread_name_prefix="conveyor-heartbeat"
                )
                self._wakes_at = float("inf")
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-heartbeats", daemon=True
                )
                self._thread.start()
            key = next(self._keys)
            due = time.monotonic() + interval_s
            self._due[key] = (due, interval_s, reporter)
            if due < self._wakes_at:
                self._changed.notify()
            return key

    def stop_beating(self, key: int) -> None:
        """Stop; once this returns, no beat for it is under way or will be."""
        with self._lock:
            self._due.pop(key, None)
            while key in self._beating:  # rare: its beat is being written right now
                self._beat_done.wait()

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                due = [(key, entry) for key, entry in self._due.items() if entry[0] <= now]
                for key, (_, interval, reporter) in due:
                    self._due[key] = (now + interval, interval, reporter)
                if not due:
                    self._wakes_at = min(
                        (entry[0] for entry in self._due.values()), default=float("inf")
                    )
                    self._changed.wait(
                        None if self._wakes_at == float("inf") else self._wakes_at - now
                    )
                    self._wakes_at = float("inf")
                    continue
            for key, (_, _, reporter) in due:
                with self._lock:
                    if key not in self._due or key in self._beating:
                        continue  # its job ended meanwhile, or its last beat is still going
                    self._beating.add(key)
                assert self._pool is not None
                self._pool.submit(self._beat, key, reporter)

    def _beat(self, key: int, reporter: JobReporter) -> None:
        try:
            reporter.heartbeat()
        except Exception:  # a database hiccup must not end the job; the next beat retries
            logger.warning("heartbeat failed; retrying at the next beat", exc_info=True)
        finally:
            with self._lock:
                self._beating.discard(key)
                self._beat_done.notify_all()
