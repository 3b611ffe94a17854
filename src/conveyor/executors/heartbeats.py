"""Heartbeats of the jobs a process runs: one thread beats for all of them.

A job's runner must look alive from its claim to its result, whatever it is doing (a
long checkout, the grace period of a stop). A thread of its own per job did that, but
starting it and joining it cost two hand-offs between threads on every job's path, and
under load each waited for the GIL (docs/benchmarks.md). One thread per process now
beats for every job registered with it, each at its own interval.

Beats are sent one after another: with a database that answers slowly, the jobs of one
process (at most its `max_parallel_jobs`, or a worker's concurrency) share the delay,
which stays far below the heartbeat timeout (a third of it is the interval).
"""

import itertools
import logging
import os
import threading
import time

from conveyor.executors.reporting import JobReporter

logger = logging.getLogger("conveyor.runner")


class Heartbeats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # the heart waits for new jobs
        self._beat_done = threading.Condition(self._lock)  # stop_beating waits for a beat
        # key -> (next beat, monotonic; interval; whose)
        self._due: dict[int, tuple[float, float, JobReporter]] = {}
        self._keys = itertools.count()
        self._wakes_at = float("inf")
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._beating: int | None = None  # the key whose beat is under way

    def start_beating(self, reporter: JobReporter, interval_s: float) -> int:
        """Beat for `reporter` every `interval_s`, from now until `stop_beating(key)`."""
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # Started on first use, in this process: a forked worker has none.
                self._due.clear()
                self._wakes_at = float("inf")
                self._pid = os.getpid()
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
            while self._beating == key:  # rare: its beat is being written right now
                self._beat_done.wait()

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                due = [(key, entry[2]) for key, entry in self._due.items() if entry[0] <= now]
                for key, _ in due:
                    _, interval, reporter = self._due[key]
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
            for key, reporter in due:
                with self._lock:
                    if key not in self._due:
                        continue  # its job ended meanwhile
                    self._beating = key
                try:
                    reporter.heartbeat()
                except Exception:  # a database hiccup must not end the job; the next beat retries
                    logger.warning("heartbeat failed; retrying at the next beat", exc_info=True)
                finally:
                    with self._lock:
                        self._beating = None
                        self._beat_done.notify_all()
