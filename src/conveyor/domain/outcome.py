"""A task's status from its jobs: the first non-passed stage decides."""

from collections.abc import Iterable

from conveyor.domain.states import JobState, TaskState

# Within a stage, the worst outcome wins: cancelled > timeout > failed.
_RANK = {JobState.CANCELLED: 3, JobState.TIMEOUT: 2, JobState.FAILED: 1}
_AS_TASK = {
    JobState.CANCELLED: TaskState.CANCELLED,
    JobState.TIMEOUT: TaskState.TIMEOUT,
    JobState.FAILED: TaskState.FAILED,
}


def stage_outcome(states: Iterable[JobState]) -> TaskState:
    """PASSED if every job passed, else the worst non-passed outcome of the stage."""
    worst = max((s for s in states if s in _RANK), key=_RANK.__getitem__, default=None)
    return TaskState.PASSED if worst is None else _AS_TASK[worst]


def task_outcome(builds: Iterable[JobState], deploys: Iterable[JobState]) -> TaskState:
    """Stage by stage: the builds' outcome unless they all passed, then the deploys'."""
    built = stage_outcome(builds)
    return built if built is not TaskState.PASSED else stage_outcome(deploys)
