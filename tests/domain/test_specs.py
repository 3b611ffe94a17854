"""Specs as JSON: stored with each task, sent to workers. What an older server stored or
sent, before a field existed, still reads, with that field's default."""

from conveyor.domain.jobs import JobSpec
from conveyor.domain.tasks import ResolvedRepo, StepSpec

REPO = ResolvedRepo("app", "/srv/app.git", "main", 0, "a" * 40)


def test_a_step_keeps_checkout_false_and_an_older_step_checks_out() -> None:
    step = StepSpec("./deploy.sh", 600, None, checkout=False)
    assert StepSpec.from_json(step.to_json()) == step
    older = {"script": "./deploy.sh", "timeout_s": 600, "queue": None}
    assert StepSpec.from_json(older) == StepSpec("./deploy.sh", 600, None, (), True)


def test_a_job_message_keeps_checkout_false_and_an_older_message_checks_out() -> None:
    job = JobSpec(1, 2, "wf", 3, 1, "deploy", "svc", "dev", (REPO,), "true", 60, (),
                  checkout=False)  # fmt: skip
    assert JobSpec.from_json(job.to_json(), {}, ()) == job
    older = job.to_json()
    del older["checkout"]
    assert JobSpec.from_json(older, {}, ()).checkout is True
