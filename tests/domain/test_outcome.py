import pytest

from conveyor.domain.outcome import task_outcome
from conveyor.domain.states import JobState, TaskState

J = JobState


@pytest.mark.parametrize(
    ("builds", "deploys", "expected"),
    [
        ([J.PASSED, J.PASSED], [J.PASSED, J.PASSED], TaskState.PASSED),
        ([J.PASSED, J.FAILED], [J.SKIPPED, J.SKIPPED], TaskState.FAILED),
        ([J.FAILED, J.TIMEOUT], [J.SKIPPED], TaskState.TIMEOUT),
        ([J.TIMEOUT, J.CANCELLED, J.FAILED], [], TaskState.CANCELLED),
        # The first non-passed stage decides, even if a later one is "worse".
        ([J.FAILED], [J.CANCELLED], TaskState.FAILED),
        ([J.PASSED], [J.FAILED, J.TIMEOUT], TaskState.TIMEOUT),
        ([J.PASSED], [J.PASSED, J.CANCELLED], TaskState.CANCELLED),
    ],
)
def test_first_non_passed_stage_ranked(
    builds: list[JobState], deploys: list[JobState], expected: TaskState
) -> None:
    assert task_outcome(builds, deploys) is expected
