"""The rules of notifications: what each status says, where it goes, how an answer is
judged and how long to wait before trying again."""

import email.utils
import json
from collections.abc import Iterator

import pytest

from conveyor.domain.notifications import (
    BACKOFF_MAX_S,
    CommitFact,
    Endpoint,
    NotifyPolicy,
    TaskFacts,
    Verdict,
    backoff_s,
    describe,
    judge,
    retry_after,
)
from conveyor.domain.states import PublicStatus
from conveyor.domain.tasks import RefKind

MR_HEAD = "a" * 40
BASE = "b" * 40
OTHER = "c" * 40


def facts(status: PublicStatus = PublicStatus.CREATED, **changes: object) -> TaskFacts:
    values: dict[str, object] = {
        "workflow_name": "wf",
        "task_id": 7,
        "attempt": 1,
        "status": status,
        "created_by": "gitlab:demo/app",
        "create_time": 100,
        "start_time": None,
        "end_time": None,
        "commits": (
            CommitFact("app", RefKind.MERGE_REQUEST, "refs/merge-requests/3/head", 3, MR_HEAD),
            CommitFact("app", RefKind.BRANCH, "main", 3, BASE),
            CommitFact("lib", RefKind.BRANCH, "main", 0, OTHER),
        ),
    }
    values.update(changes)
    return TaskFacts(**values)  # type: ignore[arg-type]


POLICY = NotifyPolicy(
    "https://ci.example.com",
    "https://gitlab.example.com/api/v4",
    {"app": "group/sub group/app", "lib": 12},
    (Endpoint("https://chat.example.com/x", frozenset({"task.failed"}), ("w*",)),),
)


def ids() -> Iterator[str]:
    return iter(f"id-{i}" for i in range(100))


def test_a_merge_request_reports_on_its_head_not_on_the_base_it_is_merged_onto() -> None:
    given = ids()
    statuses = [m for m in POLICY.messages(facts(), lambda: next(given)) if m.channel == "gitlab"]
    assert [m.url for m in statuses] == [
        f"https://gitlab.example.com/api/v4/projects/group%2Fsub%20group%2Fapp/statuses/{MR_HEAD}",
        f"https://gitlab.example.com/api/v4/projects/12/statuses/{OTHER}",
    ]
    mr, branch = (json.loads(m.body) for m in statuses)
    assert mr["ref"] == "refs/merge-requests/3/head"  # how GitLab finds a fork's head
    assert branch["ref"] == "main"
    assert mr["state"] == "pending"
    assert mr["target_url"] == "https://ci.example.com/workflows/wf/tasks/7"
    assert len({m.key for m in statuses}) == 2
    assert all(len(m.key) == 64 for m in statuses)
    assert all(m.coalesce for m in statuses)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (PublicStatus.CREATED, "pending"),
        (PublicStatus.RUNNING, "running"),
        (PublicStatus.PASSED, "success"),
        (PublicStatus.FAILED, "failed"),
        (PublicStatus.TIMEOUT, "failed"),
        (PublicStatus.CANCELLED, "canceled"),
    ],
)
def test_each_task_status_maps_to_gitlabs_state(status: PublicStatus, state: str) -> None:
    given = ids()
    (first, *_) = POLICY.messages(facts(status), lambda: next(given))
    assert json.loads(first.body)["state"] == state


def test_endpoints_get_only_their_events_of_their_workflows() -> None:
    given = ids()
    failed = POLICY.messages(facts(PublicStatus.FAILED), lambda: next(given))
    assert [m.channel for m in failed] == ["gitlab", "gitlab", "webhook"]
    assert POLICY.messages(facts(PublicStatus.PASSED), lambda: next(given))[-1].channel == "gitlab"
    other = POLICY.messages(facts(PublicStatus.FAILED, workflow_name="xyz"), lambda: next(given))
    assert [m.channel for m in other] == ["gitlab", "gitlab"]
    event = json.loads(failed[-1].body)
    assert event["delivery"] == failed[-1].delivery_id
    assert not failed[-1].coalesce


def test_descriptions_say_what_happened_and_where_it_failed() -> None:
    assert describe(facts()) == "waiting to run"
    assert describe(facts(attempt=2)) == "waiting to run (attempt 2)"
    assert describe(facts(PublicStatus.PASSED, start_time=10, end_time=73)) == "passed in 63s"
    failed = facts(PublicStatus.FAILED, failed_job=("build", "redis3", "script exited with 1"))
    assert describe(failed) == "build redis3 failed: script exited with 1"
    timeout = facts(PublicStatus.TIMEOUT, failed_job=("deploy", "web", "timed out after 600s"))
    assert describe(timeout) == "deploy web timed out after 600s"
    long = facts(PublicStatus.FAILED, failed_job=("build", "x", "y" * 1000))
    assert len(describe(long)) == 255


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, "", Verdict.DELIVERED),
        (201, "{}", Verdict.DELIVERED),
        (400, '{"message":"Cannot transition status via :run from :running"}', Verdict.DELIVERED),
        (400, '{"message":"state is invalid"}', Verdict.DROP),
        (401, "", Verdict.DROP),
        (404, '{"message":"404 Project Not Found"}', Verdict.DROP),
        (408, "", Verdict.RETRY),
        (429, "", Verdict.RETRY),
        (500, "", Verdict.RETRY),
        (503, "", Verdict.RETRY),
        (302, "", Verdict.DROP),
    ],
)
def test_answers_are_judged(status: int, body: str, verdict: Verdict) -> None:
    assert judge("gitlab", status, {}, body).verdict is verdict


def test_a_webhooks_400_is_never_taken_for_gitlabs_repeated_state() -> None:
    assert judge("webhook", 400, {}, "Cannot transition status").verdict is Verdict.DROP


def test_retry_after_in_seconds_or_as_a_date_and_never_beyond_an_hour() -> None:
    assert retry_after({"Retry-After": "120"}) == 120
    assert retry_after({"retry-after": "999999"}) == 3600
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after({"Retry-After": date}, now) == 30
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None
    judged = judge("gitlab", 429, {"Retry-After": "90"}, "")
    assert judged.retry_after_s == 90


def test_backoff_doubles_to_a_ceiling_and_yields_to_a_longer_retry_after() -> None:
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff_s(40) == BACKOFF_MAX_S
    assert backoff_s(1, retry_after_s=120) == 120
    assert backoff_s(9, retry_after_s=3) == 256


def test_a_webhook_url_is_shown_without_the_credential_it_may_hold() -> None:
    from conveyor.domain.notifications import shown_url

    assert shown_url("https://hooks.slack.com/services/T0/B0/secret") == "https://hooks.slack.com/…"
    assert shown_url("https://user:pw@chat.example.com") == "https://chat.example.com"
    assert shown_url("http://[::1/x") == "(an invalid URL)"
