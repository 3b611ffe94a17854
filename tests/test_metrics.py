"""A job's duration in the metrics is the job's own time, not its report's."""

import types

import pytest

from conveyor import metrics
from conveyor.domain.jobs import JobResult, Outcome
from conveyor.metrics import Metrics


class SlowReport:
    """A reporter whose result takes 30 s to record (the task's advance, a busy
    database), on a clock that only moves when told."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock

    def claim(self) -> bool:
        return True

    def started(self, pid: int) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def cancel_requested(self) -> bool:
        return False

    def finished(self, result: JobResult) -> None:
        self.clock[0] += 30


def test_a_jobs_duration_ends_when_the_job_does(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(metrics, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    found = Metrics()
    measured = found.measured(SlowReport(clock), "build")
    measured.started(4242)
    clock[0] += 2  # the script runs 2 s
    measured.finished(JobResult(Outcome.PASSED, 0, "script exited with 0"))
    labels = {"stage": "build"}
    assert found.registry.get_sample_value("conveyor_job_duration_seconds_sum", labels) == 2
