"""Task and job states, and the six status words the API exposes."""

from enum import StrEnum


class TaskState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


class JobState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"  # handed to an executor; no runner has claimed it yet
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class PublicStatus(StrEnum):
    """The only status words that leave the API."""

    CREATED = "created"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


TERMINAL_TASK_STATES = frozenset(
    {TaskState.PASSED, TaskState.FAILED, TaskState.TIMEOUT, TaskState.CANCELLED}
)
RESTARTABLE_TASK_STATES = frozenset(
    {TaskState.FAILED, TaskState.TIMEOUT, TaskState.CANCELLED, TaskState.CANCELLING}
)
TERMINAL_JOB_STATES = frozenset(
    {JobState.PASSED, JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED, JobState.SKIPPED}
)

_PUBLIC: dict[TaskState, PublicStatus] = {
    TaskState.QUEUED: PublicStatus.CREATED,
    TaskState.RUNNING: PublicStatus.RUNNING,
    # The spec: a running task is `cancelled` as soon as the cancel is durably recorded,
    # even while its processes are still being stopped.
    TaskState.CANCELLING: PublicStatus.CANCELLED,
    TaskState.PASSED: PublicStatus.PASSED,
    TaskState.FAILED: PublicStatus.FAILED,
    TaskState.TIMEOUT: PublicStatus.TIMEOUT,
    TaskState.CANCELLED: PublicStatus.CANCELLED,
}


def public_status(state: TaskState) -> PublicStatus:
    return _PUBLIC[state]
