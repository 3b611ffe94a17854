import itertools

import pytest

from conveyor.domain.errors import IllegalTransition
from conveyor.domain.states import (
    TERMINAL_TASK_STATES,
    JobState,
    PublicStatus,
    TaskState,
    public_status,
)
from conveyor.domain.transitions import transition

T = TaskState
J = JobState

ALLOWED_TASK = {
    (T.QUEUED, T.RUNNING),
    (T.QUEUED, T.CANCELLED),
    (T.RUNNING, T.PASSED),
    (T.RUNNING, T.FAILED),
    (T.RUNNING, T.TIMEOUT),
    (T.RUNNING, T.CANCELLING),
    (T.CANCELLING, T.CANCELLED),
    (T.CANCELLING, T.QUEUED),
    (T.FAILED, T.QUEUED),
    (T.TIMEOUT, T.QUEUED),
    (T.CANCELLED, T.QUEUED),
}

ALLOWED_JOB = {
    (J.PENDING, J.QUEUED),
    (J.QUEUED, J.RUNNING),
    (J.QUEUED, J.CANCELLED),
    (J.QUEUED, J.PENDING),
    (J.QUEUED, J.FAILED),
    (J.PENDING, J.CANCELLED),
    (J.PENDING, J.SKIPPED),
    (J.RUNNING, J.PASSED),
    (J.RUNNING, J.FAILED),
    (J.RUNNING, J.TIMEOUT),
    (J.RUNNING, J.CANCELLED),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(TaskState, TaskState)))
def test_task_transition_every_pair(current: TaskState, target: TaskState) -> None:
    if (current, target) in ALLOWED_TASK:
        assert transition(current, target) is target
    else:
        with pytest.raises(IllegalTransition):
            transition(current, target)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(JobState, JobState)))
def test_job_transition_every_pair(current: JobState, target: JobState) -> None:
    if (current, target) in ALLOWED_JOB:
        assert transition(current, target) is target
    else:
        with pytest.raises(IllegalTransition):
            transition(current, target)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_TASK_STATES))
@pytest.mark.parametrize("report", [T.PASSED, T.FAILED, T.TIMEOUT, T.CANCELLED, T.RUNNING])
def test_terminal_task_states_ignore_executor_reports(
    terminal: TaskState, report: TaskState
) -> None:
    with pytest.raises(IllegalTransition):
        transition(terminal, report)


def test_task_and_job_states_do_not_mix_even_where_words_match() -> None:
    # "running" -> "cancelled" is legal for a job but not for a task.
    with pytest.raises(IllegalTransition):
        transition(T.RUNNING, J.CANCELLED)  # type: ignore[type-var]
    with pytest.raises(IllegalTransition):
        transition(T.RUNNING, T.CANCELLED)


def test_only_the_six_documented_words_leave_the_api() -> None:
    words = {public_status(state).value for state in TaskState}
    assert words == {"created", "running", "passed", "failed", "timeout", "cancelled"}
    assert {s.value for s in PublicStatus} == words
    assert public_status(T.QUEUED) is PublicStatus.CREATED
    assert public_status(T.CANCELLING) is PublicStatus.CANCELLED
