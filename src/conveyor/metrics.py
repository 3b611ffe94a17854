"""Prometheus metrics of a server or a worker (docs/operations.md).

Counts of what happened (tasks created and finished, jobs finished, HTTP requests) and
their durations are kept by the process that saw them happen, as Prometheus expects of
counters: a restart starts them again from zero. What is waiting or running now is
counted in the database at each scrape, so every server tells the same truth."""

import logging
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from conveyor.domain.jobs import JobResult
from conveyor.executors.reporting import JobReporter
from conveyor.settings import Config
from conveyor.storage.db import Database
from conveyor.storage.live_counts import live_counts

log = logging.getLogger("conveyor.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A CI job takes seconds to an hour; an HTTP request, milliseconds.
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tasks_created = Counter(
            "conveyor_tasks_created", "Tasks created", ["workflow"], registry=r
        )
        self.tasks_finished = Counter(
            "conveyor_tasks_finished", "Tasks that ended, by status", ["workflow", "status"],
            registry=r,
        )  # fmt: skip
        self.task_duration = Histogram(
            "conveyor_task_duration_seconds", "From a task's start to its end",
            ["workflow"], buckets=RUN_BUCKETS, registry=r,
        )  # fmt: skip
        self.jobs_finished = Counter(
            "conveyor_jobs_finished", "Jobs this process ran to their end, by status",
            ["stage", "status"], registry=r,
        )  # fmt: skip
        self.job_duration = Histogram(
            "conveyor_job_duration_seconds", "From a job's start to its end, in this process",
            ["stage"], buckets=RUN_BUCKETS, registry=r,
        )  # fmt: skip
        self.http_requests = Counter(
            "conveyor_http_requests", "HTTP requests answered",
            ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self.http_duration = Histogram(
            "conveyor_http_request_duration_seconds", "From a request to its answer",
            ["route", "method"], buckets=HTTP_BUCKETS, registry=r,
        )  # fmt: skip

    # -- what services report (services.ports.TaskEvents) -----------------------------

    def task_created(self, workflow: str) -> None:
        self.tasks_created.labels(workflow).inc()

    def task_finished(
        self, workflow: str, task_id: int, status: str, seconds: float | None
    ) -> None:
        self.tasks_finished.labels(workflow, status).inc()
        if seconds is not None:
            self.task_duration.labels(workflow).observe(max(0.0, seconds))

    def http(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_duration.labels(route, method).observe(seconds)

    def measured(self, reporter: JobReporter, stage: str) -> JobReporter:
        return _MeasuredReporter(reporter, stage, self)

    def watch_waits(self, waiting: Callable[[], int]) -> None:
        """A gauge of the requests waiting for a task's end (`?wait=`), at each scrape."""
        gauge = Gauge(
            "conveyor_requests_waiting", "Requests waiting for a task's end (?wait=)",
            registry=self.registry,
        )  # fmt: skip
        gauge.set_function(waiting)

    def watch_database(self, db: Database, config: Config, clock: Callable[[], int]) -> None:
        """Gauges of what waits and runs now, read from the database at each scrape."""
        self.registry.register(_LiveCollector(db, config, clock))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _MeasuredReporter:
    """A runner's reporter that also counts the job's end and how long it ran."""

    def __init__(self, inner: JobReporter, stage: str, metrics: Metrics) -> None:
        self._inner, self._stage, self._metrics = inner, stage, metrics
        self._started: float | None = None

    def claim(self) -> bool:
        return self._inner.claim()

    def started(self, pid: int) -> None:
        self._started = time.monotonic()
        self._inner.started(pid)

    def heartbeat(self) -> None:
        self._inner.heartbeat()

    def cancel_requested(self) -> bool:
        return self._inner.cancel_requested()

    def finished(self, result: JobResult) -> None:
        # Before the report: recording it also advances the task (the next stage sent,
        # or the task ended), which is not the job's time.
        took = None if self._started is None else time.monotonic() - self._started
        self._inner.finished(result)
        self._metrics.jobs_finished.labels(self._stage, result.outcome.value).inc()
        if took is not None:
            self._metrics.job_duration.labels(self._stage).observe(took)


class _LiveCollector(Collector):
    def __init__(self, db: Database, config: Config, clock: Callable[[], int]) -> None:
        self._db, self._config, self._clock = db, config, clock

    def _queue(self, service: str, stage: str) -> str:
        found = self._config.services.get(service)
        step = None if found is None else (found.build if stage == "build" else found.deploy)
        return (step.queue if step is not None else None) or self._config.queue

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "conveyor_database_up", "1 when the database answered this scrape's counts"
        )
        try:
            counts = live_counts(self._db)
        except Exception as exc:
            # The process's own counters are still worth a scrape; say what is missing.
            log.warning("metrics: the live counts could not be read: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        waiting = GaugeMetricFamily(
            "conveyor_tasks_waiting", "Tasks created, waiting to run", labels=["workflow"]
        )
        running = GaugeMetricFamily(
            "conveyor_tasks_running", "Tasks running or being cancelled", labels=["workflow"]
        )
        by_workflow: dict[str, list[int]] = {w: [0, 0] for w in self._config.workflows}
        for (workflow, state), n in counts.tasks.items():
            by_workflow.setdefault(workflow, [0, 0])[0 if state == "queued" else 1] += n
        for workflow, (w, r) in sorted(by_workflow.items()):
            waiting.add_metric([workflow], w)
            running.add_metric([workflow], r)
        queued = GaugeMetricFamily(
            "conveyor_jobs_queued", "Jobs handed to an executor, no runner has taken yet",
            labels=["queue"],
        )  # fmt: skip
        # Every queue a step of the config names, at 0 when empty: an alert sees a queue
        # that no worker drains as a number, not as a missing series.
        per_queue = {
            self._queue(name, stage): 0
            for name in self._config.services
            for stage in ("build", "deploy")
        }
        jobs_running = 0
        for (state, service, stage), n in counts.jobs.items():
            if state == "queued":
                queue = self._queue(service, stage)
                per_queue[queue] = per_queue.get(queue, 0) + n
            else:
                jobs_running += n
        for queue, n in sorted(per_queue.items()):
            queued.add_metric([queue], n)
        age = GaugeMetricFamily(
            "conveyor_running_job_heartbeat_age_seconds",
            "Seconds since the running job that beat longest ago last beat (0: none runs)",
        )
        oldest = counts.oldest_heartbeat
        age.add_metric([], 0 if oldest is None else max(0, self._clock() - oldest))
        yield waiting
        yield running
        yield queued
        yield GaugeMetricFamily("conveyor_jobs_running", "Jobs running", value=jobs_running)
        yield age
        yield GaugeMetricFamily(
            "conveyor_notifications_waiting", "Commit statuses and task events not yet sent",
            value=counts.notifications_waiting,
        )  # fmt: skip
