"""The one table of allowed state changes. Every state change goes through here."""

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from conveyor.domain.errors import IllegalTransition
from conveyor.domain.states import JobState, TaskState

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.QUEUED: frozenset({TaskState.RUNNING, TaskState.CANCELLED}),
    TaskState.RUNNING: frozenset(
        {TaskState.PASSED, TaskState.FAILED, TaskState.TIMEOUT, TaskState.CANCELLING}
    ),
    # CANCELLING -> QUEUED is a restart of a task whose processes are still stopping;
    # the scheduler holds it until they are gone.
    TaskState.CANCELLING: frozenset({TaskState.CANCELLED, TaskState.QUEUED}),
    TaskState.PASSED: frozenset(),
    # Terminal states are sticky: the only way out is a restart, back to QUEUED.
    TaskState.FAILED: frozenset({TaskState.QUEUED}),
    TaskState.TIMEOUT: frozenset({TaskState.QUEUED}),
    TaskState.CANCELLED: frozenset({TaskState.QUEUED}),
}

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.QUEUED, JobState.CANCELLED, JobState.SKIPPED}),
    # A runner claims a queued job atomically; a second delivery finds it taken. A job the
    # executor would not take goes back to wait (PENDING); one no runner took within
    # `queue_timeout` fails.
    JobState.QUEUED: frozenset(
        {JobState.RUNNING, JobState.CANCELLED, JobState.PENDING, JobState.FAILED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.PASSED, JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED}
    ),
    JobState.PASSED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.TIMEOUT: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.SKIPPED: frozenset(),
}

_TABLES: dict[type[StrEnum], Mapping[Any, frozenset[Any]]] = {
    TaskState: TASK_TRANSITIONS,
    JobState: JOB_TRANSITIONS,
}

_S = TypeVar("_S", TaskState, JobState)


def transition(current: _S, target: _S) -> _S:
    """Return `target` if moving there from `current` is allowed, else raise.

    Task and job states share words ("running"), and StrEnum members compare as
    strings, so the kinds are checked explicitly before the table is consulted.
    """
    if type(current) is not type(target) or target not in _TABLES[type(current)][current]:
        raise IllegalTransition(current, target)
    return target
