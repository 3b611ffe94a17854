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


def test_a_job_that_checks_out_is_sent_as_a_worker_from_before_the_field_reads_it() -> None:
    job = JobSpec(1, 2, "wf", 3, 1, "deploy", "svc", "dev", (REPO,), "true", 60, ())
    assert "checkout" not in job.to_json()


def test_a_message_from_a_newer_server_reads_without_the_keys_this_runner_does_not_know() -> None:
    job = JobSpec(1, 2, "wf", 3, 1, "build", "svc", "dev", (REPO,), "true", 60, ())
    newer = {**job.to_json(), "some_future_setting": True, "secrets": {"X": "smuggled"}}
    read = JobSpec.from_json(newer, {"TOKEN": "from-this-config"}, ())
    assert read.to_json() == job.to_json()
    assert dict(read.secrets) == {"TOKEN": "from-this-config"}  # never from the message
