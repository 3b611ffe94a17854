"""Commit statuses and task events from the outbox to a real HTTP server playing GitLab:
in order, coalesced, retried, dropped for a reason, never blocked by one slow key.
The sender is driven pass by pass on a clock the test moves, so nothing sleeps."""

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.config_file import parse_config
from conveyor.domain.states import TaskState
from conveyor.domain.tasks import Task
from conveyor.services.delivery import NotificationSender
from conveyor.settings import Config
from conveyor.storage.db import Database
from conveyor.storage.outbox import SqlOutboxStore
from conveyor.storage.tables import outbox
from conveyor.wiring import Container, http_poster
from tests.fixtures import CONFIG, WF, Repos, create_body
from tests.hooks.fake_gitlab import Answer, FakeGitlab, Received

TOKEN = "glpat-test-token-0123"
CHAT_SECRET = "chat-secret-0123456789"


@pytest.fixture
def config(repos: Repos, tmp_path: Path, fake_gitlab: FakeGitlab) -> Config:
    text = CONFIG.format(voting=repos.voting.url, dyliu=repos.dyliu.url)
    text = text.replace(
        "default_branch: master}", "default_branch: master, gitlab_project: demo/voting-app}"
    ).replace(
        f'dyliu: {{url: "{repos.dyliu.url}"}}',
        f'dyliu: {{url: "{repos.dyliu.url}", gitlab_project: 42}}',
    )
    head = f"""
gitlab: {{url: "{fake_gitlab.url}", token: "{TOKEN}"}}
notifications:
  - url: "{fake_gitlab.url}/chat"
    secret: "{CHAT_SECRET}"
    events: [task.created, task.running, task.passed, task.failed]
    workflows: ["autoproject-*"]
"""
    return parse_config(head + text, base=tmp_path)


class Clock:
    """Time that stands still until the test moves it: the tasks' (whole seconds) and
    the sender's."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> int:
        return int(self.now)

    def sender(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(1_800_000_000.0)


@pytest.fixture
def sender_clock(clock: Clock) -> Clock:
    return clock


@pytest.fixture
def sender(config: Config, database: Database, sender_clock: Clock) -> Iterator[NotificationSender]:
    found = NotificationSender(SqlOutboxStore(database), http_poster(config), sender_clock.sender)
    yield found
    found.stop()


def deliver(sender: NotificationSender) -> int:
    """One pass of the sender, waited for; how many messages it sent."""
    started = sender.deliver_due()
    wait(started, timeout=30)
    return len(started)


def create(container: Container) -> Task:
    from conveyor.domain.principals import Principal
    from conveyor.domain.tasks import RepoRequest
    from conveyor.services.tasks import CreateRequest, TargetRequest

    body = create_body()
    assert body["workflow_name"] == WF
    request = CreateRequest(
        WF,
        "dev",
        (
            TargetRequest(
                "redis3", (RepoRequest("voting-app", "master"), RepoRequest("dyliu", "main"))
            ),
        ),
    )
    return container.tasks.create(Principal("alice", ("admin",)), request)


def run_to(container: Container, task: Task, outcome: TaskState, now: int) -> None:
    assert container.jobs.start_task(task, now) is not None
    running = container.jobs.task_of(task.pk)
    assert container.jobs.finish_task(running, outcome, now)


def event_row(fake: FakeGitlab, key: str, now: int, next_time: int) -> dict[str, object]:
    """A waiting task event to the chat URL, as the outbox holds one."""
    return {
        "channel": "webhook", "key": key, "coalesce": False, "url": f"{fake.url}/chat",
        "event": "task.failed", "delivery_id": "d", "body": "{}", "workflow_name": WF,
        "task_id": 1, "state": "waiting", "attempts": 3, "create_time": now,
        "next_time": next_time,
    }  # fmt: skip


def gitlab_states(fake: FakeGitlab, sha: str) -> list[str]:
    return [s["state"] for s in fake.statuses(sha)]


def states_in_outbox(database: Database) -> list[tuple[str, str]]:
    with database.read() as conn:
        rows = conn.execute(sa.select(outbox.c.event, outbox.c.state).order_by(outbox.c.id))
        return [(r.event, r.state) for r in rows]


def test_pending_running_success_reach_gitlab_in_order_with_sha_name_url_and_token(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, repos: Repos,
    clock: Clock,
) -> None:  # fmt: skip
    task = create(container)
    deliver(sender)
    assert container.jobs.start_task(task, clock()) is not None
    deliver(sender)
    assert container.jobs.finish_task(container.jobs.task_of(task.pk), TaskState.PASSED, clock())
    deliver(sender)
    sha = repos.voting.head("master")
    assert gitlab_states(fake_gitlab, sha) == ["pending", "running", "success"]
    first = next(r for r in fake_gitlab.received if r.path.endswith(sha))
    assert first.path == f"/api/v4/projects/demo%2Fvoting-app/statuses/{sha}"
    assert first.headers["private-token"] == TOKEN
    assert first.json == {
        "state": "pending",
        "name": f"conveyor/{WF}",
        "target_url": f"http://conveyor.test/workflows/{WF}/tasks/1",
        "description": "waiting to run",
        "ref": "master",
    }
    # The other repo's project is named by its numeric id.
    other = repos.dyliu.head()
    assert gitlab_states(fake_gitlab, other) == ["pending", "running", "success"]
    assert any(r.path == f"/api/v4/projects/42/statuses/{other}" for r in fake_gitlab.received)


def test_a_failed_task_says_which_job_failed_and_why(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, repos: Repos,
    database: Database, clock: Clock,
) -> None:  # fmt: skip
    from conveyor.storage.tables import jobs

    task = create(container)
    with database.write() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.task_pk == task.pk, jobs.c.stage == "build")
            .values(state="failed", detail="script exited with 1", end_time=clock())
        )
    run_to(container, task, TaskState.FAILED, clock())
    deliver(sender)
    (status,) = fake_gitlab.statuses(repos.voting.head("master"))
    assert (status["state"], status["description"]) == (
        "failed",
        "build redis3 failed: script exited with 1",
    )


def test_a_cancelled_task_is_canceled_in_gitlab(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, repos: Repos
) -> None:
    from conveyor.domain.principals import Principal

    task = create(container)
    deliver(sender)
    container.tasks.cancel(Principal("alice", ("admin",)), WF, task.task_id)
    deliver(sender)
    assert gitlab_states(fake_gitlab, repos.voting.head("master")) == ["pending", "canceled"]


def test_states_that_wait_together_coalesce_to_the_latest(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, repos: Repos,
    database: Database, clock: Clock,
) -> None:  # fmt: skip
    task = create(container)
    run_to(container, task, TaskState.PASSED, clock())
    deliver(sender)
    assert gitlab_states(fake_gitlab, repos.voting.head("master")) == ["success"]
    gitlab_rows = [s for e, s in states_in_outbox(database)]
    assert gitlab_rows.count("superseded") == 4  # pending and running, for two commits


def test_gitlab_down_for_a_while_then_up_gets_everything_in_order(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, repos: Repos,
    sender_clock: Clock, clock: Clock,
) -> None:  # fmt: skip
    down = True
    fake_gitlab.responder = lambda r: Answer(502, "bad gateway") if down else Answer()
    task = create(container)
    deliver(sender)  # attempt 1 fails: the next in 1 s
    assert deliver(sender) == 0  # not due yet
    assert container.jobs.start_task(task, clock()) is not None
    for wait_s in (1, 2, 4):  # doubling
        sender_clock.now += wait_s - 0.5
        assert deliver(sender) == 0
        sender_clock.now += 0.5
        assert deliver(sender) > 0
    down = False
    assert container.jobs.finish_task(container.jobs.task_of(task.pk), TaskState.PASSED, clock())
    sender_clock.now += 8
    while deliver(sender):
        pass
    sha = repos.voting.head("master")
    # Never backwards: nothing older reached GitLab after the latest state.
    assert gitlab_states(fake_gitlab, sha) == ["success"]
    # Task events are not coalesced: each arrives, in order, once GitLab is back.
    chat = [r.json["event"] for r, code in fake_gitlab.answered if r.path == "/chat" and code < 300]
    assert chat == ["task.created", "task.running", "task.passed"]


def test_a_429_is_retried_no_sooner_than_retry_after(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, repos: Repos,
    sender_clock: Clock,
) -> None:  # fmt: skip
    answers = iter([Answer(429, "slow down", (("Retry-After", "120"),))])
    fake_gitlab.responder = lambda r: next(answers, Answer())
    create(container)
    deliver(sender)
    sender_clock.now += 119
    deliver(sender)
    sha = repos.voting.head("master")
    sent_to_sha = [r for r in fake_gitlab.received if r.path.endswith(sha)]
    # The one that got the 429 was asked once (or the other commit got it).
    assert len(fake_gitlab.received) == 3 or len(sent_to_sha) == 1
    sender_clock.now += 1
    deliver(sender)
    assert gitlab_states(fake_gitlab, sha) == ["pending"]
    assert gitlab_states(fake_gitlab, repos.dyliu.head()) == ["pending"]


def test_gitlabs_cannot_transition_400_counts_as_delivered(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab,
    database: Database,
) -> None:  # fmt: skip
    refused = '{"message":"Cannot transition status via :enqueue from :pending"}'
    fake_gitlab.responder = lambda r: Answer(400, refused) if "statuses" in r.path else Answer()
    create(container)
    deliver(sender)
    assert {s for e, s in states_in_outbox(database)} == {"delivered"}


def test_other_4xx_is_dropped_with_the_reason_logged_and_listed_and_can_be_sent_again(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, repos: Repos,
    caplog: pytest.LogCaptureFixture, admin: dict[str, str],
) -> None:  # fmt: skip
    from conveyor.domain.principals import Principal

    fake_gitlab.responder = lambda r: Answer(404, '{"message":"404 Project Not Found"}')
    create(container)
    with caplog.at_level(logging.WARNING, "conveyor.notifications"):
        deliver(sender)
    assert "dropped: HTTP 404" in caplog.text
    assert "404 Project Not Found" in caplog.text
    assert deliver(sender) == 0  # never retried on its own
    alice = Principal("alice", ("admin",))
    assert container.notifications is not None
    dropped = container.notifications.list(alice, "undelivered", 100)
    assert {e.state for e in dropped} == {"dropped"}
    assert len(dropped) == 3  # two commit statuses, one chat event
    fake_gitlab.responder = lambda r: Answer()
    for entry in dropped:
        assert container.notifications.send_again(alice, entry.id).state == "waiting"
    deliver(sender)
    assert gitlab_states(fake_gitlab, repos.voting.head("master")) == ["pending"]
    assert container.notifications.list(alice, "undelivered", 100) == []


def test_a_gitlab_that_hangs_on_one_commit_does_not_hold_the_others(
    container: Container, config: Config, database: Database, fake_gitlab: FakeGitlab,
    repos: Repos, sender_clock: Clock,
) -> None:  # fmt: skip
    from conveyor.outbound.http_poster import HttpPoster

    release = threading.Event()
    hung = repos.voting.head("master")

    def answer(r: Received) -> Answer:
        return Answer(hang=release) if r.path.endswith(hung) else Answer()

    fake_gitlab.responder = answer
    poster = HttpPoster(
        f"{fake_gitlab.url}/api/v4", TOKEN, {f"{fake_gitlab.url}/chat": CHAT_SECRET}, timeout_s=30
    )
    sender = NotificationSender(SqlOutboxStore(database), poster, sender_clock.sender)
    try:
        create(container)
        started = sender.deliver_due()
        # The other commit's status and the chat event arrive while one request hangs.
        fake_gitlab.wait_for(lambda: len(fake_gitlab.answered) == 2)
        assert sender.deliver_due() == []  # the hung key is not sent twice meanwhile
        release.set()
        wait(started, timeout=30)
        assert gitlab_states(fake_gitlab, hung) == ["pending"]
    finally:
        release.set()
        sender.stop()


def test_task_events_are_signed_carry_their_delivery_id_and_are_never_coalesced(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, clock: Clock,
) -> None:  # fmt: skip
    task = create(container)
    run_to(container, task, TaskState.PASSED, clock())
    for _ in range(3):
        deliver(sender)
    events = [r for r in fake_gitlab.received if r.path == "/chat"]
    assert [r.json["event"] for r in events] == ["task.created", "task.running", "task.passed"]
    for r in events:
        expected = hmac.new(CHAT_SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert r.headers["x-conveyor-signature"] == f"sha256={expected}"
        assert r.headers["x-conveyor-delivery"] == r.json["delivery"]
        assert r.headers["x-conveyor-event"] == r.json["event"]
    passed = events[-1].json
    assert passed["workflow_name"] == WF
    assert passed["task_id"] == 1
    assert passed["status"] == "passed"
    assert passed["url"] == f"http://conveyor.test/workflows/{WF}/tasks/1"
    assert passed["created_by"] == "alice"
    assert {c["repo_name"] for c in passed["commits"]} == {"voting-app", "dyliu"}
    assert len({r.json["delivery"] for r in events}) == 3
    json.dumps(passed)


def test_nothing_is_written_for_a_workflow_nobody_listens_to(
    container: Container, database: Database, config: Config
) -> None:
    from conveyor.domain.principals import Principal
    from conveyor.domain.tasks import RepoRequest
    from conveyor.services.tasks import CreateRequest, TargetRequest

    # team-b-deploy builds only dyliu (a GitLab project): its statuses, but no chat event.
    request = CreateRequest(
        "team-b-deploy", "prod", (TargetRequest("web", (RepoRequest("dyliu", "main"),)),)
    )
    container.tasks.create(Principal("alice", ("admin",)), request)
    assert states_in_outbox(database) == [("task.created", "waiting")]


def test_a_restart_reports_again_from_pending(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, repos: Repos,
    clock: Clock,
) -> None:  # fmt: skip
    from conveyor.domain.principals import Principal

    task = create(container)
    run_to(container, task, TaskState.FAILED, clock())
    deliver(sender)
    container.tasks.restart(Principal("alice", ("admin",)), WF, task.task_id)
    deliver(sender)
    statuses = fake_gitlab.statuses(repos.voting.head("master"))
    assert [s["state"] for s in statuses] == ["failed", "pending"]
    assert statuses[-1]["description"] == "waiting to run (attempt 2)"


def test_an_older_status_is_never_sent_again_over_a_newer_one(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, repos: Repos,
    clock: Clock,
) -> None:  # fmt: skip
    from conveyor.domain.errors import StateConflict
    from conveyor.domain.principals import Principal

    fake_gitlab.responder = lambda r: Answer(403, '{"message":"403 Forbidden"}')
    task = create(container)
    deliver(sender)  # pending: dropped
    fake_gitlab.responder = lambda r: Answer()
    run_to(container, task, TaskState.PASSED, clock())
    deliver(sender)
    alice = Principal("alice", ("admin",))
    assert container.notifications is not None
    dropped = [
        e for e in container.notifications.list(alice, "dropped", 100) if e.channel == "gitlab"
    ]
    assert len(dropped) == 2
    with pytest.raises(StateConflict, match="is older than notification"):
        container.notifications.send_again(alice, dropped[0].id)
    assert gitlab_states(fake_gitlab, repos.voting.head("master")) == ["success"]


def test_keys_in_backoff_never_hide_a_message_that_is_due(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, repos: Repos,
    database: Database, sender_clock: Clock,
) -> None:  # fmt: skip
    now = int(sender_clock.now)
    rows = [event_row(fake_gitlab, f"{i:064x}", now, now + 300) for i in range(600)]
    with database.write() as conn:
        conn.execute(outbox.insert(), rows)
    create(container)  # its statuses are due now
    deliver(sender)
    assert gitlab_states(fake_gitlab, repos.voting.head("master")) == ["pending"]
    assert not [r for r in fake_gitlab.received if r.path == "/chat" and r.json == {}]


def test_webhooks_that_hang_do_not_hold_gitlabs_statuses(
    container: Container, database: Database, fake_gitlab: FakeGitlab, repos: Repos,
    sender_clock: Clock, clock: Clock,
) -> None:  # fmt: skip
    from conveyor.outbound.http_poster import HttpPoster

    release = threading.Event()
    fake_gitlab.responder = lambda r: Answer(hang=release) if r.path == "/chat" else Answer()
    chat = f"{fake_gitlab.url}/chat"
    poster = HttpPoster(f"{fake_gitlab.url}/api/v4", TOKEN, {chat: CHAT_SECRET}, timeout_s=30)
    sender = NotificationSender(SqlOutboxStore(database), poster, sender_clock.sender)
    try:
        tasks = [create(container) for _ in range(6)]  # six chat keys, all hanging
        started = sender.deliver_due()
        # Two requests at most to the hanging URL; GitLab's statuses all go through.
        fake_gitlab.wait_for(lambda: len(fake_gitlab.statuses()) == 2)
        fake_gitlab.wait_for(
            lambda: len([r for r in fake_gitlab.received if r.path == "/chat"]) >= 2
        )
        assert len([r for r in fake_gitlab.received if r.path == "/chat"]) == 2
        assert len(tasks) == 6
    finally:
        release.set()
        wait(started, timeout=30)
        sender.stop()


def test_a_url_that_cannot_be_sent_to_is_dropped_once_not_retried_in_a_loop(
    container: Container, database: Database, sender_clock: Clock, fake_gitlab: FakeGitlab,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from conveyor.outbound.http_poster import HttpPoster

    bad = "http://[::1/x"
    poster = HttpPoster(f"{fake_gitlab.url}/api/v4", TOKEN, {bad: None})
    sender = NotificationSender(SqlOutboxStore(database), poster, sender_clock.sender)
    now = int(sender_clock.now)
    with database.write() as conn:
        conn.execute(
            outbox.insert().values(
                channel="webhook", key="k" * 64, coalesce=False, url=bad, event="task.failed",
                delivery_id="d", body="{}", workflow_name=WF, task_id=1, state="waiting",
                attempts=0, create_time=now, next_time=now,
            )
        )  # fmt: skip
    try:
        with caplog.at_level(logging.WARNING, "conveyor.notifications"):
            started = sender.deliver_due()
            assert len(started) == 1
            wait(started, timeout=30)
            assert sender.deliver_due() == []
        assert states_in_outbox(database) == [("task.failed", "dropped")]
        assert "invalid URL" in caplog.text
    finally:
        sender.stop()


def test_a_poster_that_breaks_unexpectedly_is_retried_with_backoff_not_at_once(
    container: Container, database: Database, sender_clock: Clock,
) -> None:  # fmt: skip
    from conveyor.domain.outbox import HttpAnswer, OutboxEntry

    calls: list[int] = []

    class Broken:
        def post(self, entry: OutboxEntry) -> HttpAnswer:
            calls.append(entry.id)
            raise RuntimeError("a bug")

    sender = NotificationSender(SqlOutboxStore(database), Broken(), sender_clock.sender)
    try:
        create(container)
        wait(sender.deliver_due(), timeout=30)
        assert len(calls) == 3  # two statuses and a chat event, once each
        assert sender.deliver_due() == []  # in backoff, not hammered
        sender_clock.now += 1
        wait(sender.deliver_due(), timeout=30)
        assert len(calls) == 6
    finally:
        sender.stop()


def test_the_token_never_goes_to_a_gitlab_the_config_no_longer_names(
    container: Container, database: Database, sender_clock: Clock, fake_gitlab: FakeGitlab,
) -> None:  # fmt: skip
    from conveyor.outbound.http_poster import HttpPoster

    create(container)  # statuses written for fake_gitlab.url
    moved = HttpPoster("https://gitlab.new.example.com/api/v4", TOKEN, {})
    sender = NotificationSender(SqlOutboxStore(database), moved, sender_clock.sender)
    try:
        wait(sender.deliver_due(), timeout=30)
    finally:
        sender.stop()
    assert fake_gitlab.received == []
    assert ("task.created", "dropped") in states_in_outbox(database)


def test_what_ended_a_month_ago_is_forgotten_what_waits_never(
    container: Container, sender: NotificationSender, database: Database, sender_clock: Clock,
    repos: Repos, fake_gitlab: FakeGitlab,
) -> None:  # fmt: skip
    from conveyor.storage.tables import hook_deliveries

    create(container)
    deliver(sender)  # delivered now
    fake_gitlab.responder = lambda r: Answer(503, "down")
    create(container)
    deliver(sender)  # waiting, in backoff
    with database.write() as conn:
        conn.execute(
            hook_deliveries.insert().values(id="key:old", receive_time=int(sender_clock.now))
        )
    sender_clock.now += 29 * 24 * 3600
    assert sender.prune() == 0
    sender_clock.now += 2 * 24 * 3600
    assert sender.prune() == 3  # two statuses and a chat event, delivered a month ago
    assert {s for _, s in states_in_outbox(database)} == {"waiting"}  # kept, however old
    with database.read() as conn:
        assert conn.execute(sa.select(hook_deliveries)).all() == []


def test_event_keys_held_by_an_older_event_in_backoff_never_crowd_out_statuses(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, repos: Repos,
    database: Database, sender_clock: Clock,
) -> None:  # fmt: skip
    now = int(sender_clock.now)
    rows = []
    for i in range(600):  # each key: an older event in backoff, a newer one due
        rows.append(event_row(fake_gitlab, f"{i:064x}", now, now + 300))
        rows.append(event_row(fake_gitlab, f"{i:064x}", now, now))
    with database.write() as conn:
        conn.execute(outbox.insert(), rows)
    create(container)
    deliver(sender)
    assert gitlab_states(fake_gitlab, repos.voting.head("master")) == ["pending"]
    # The newer events wait behind their older ones: none was sent out of order.
    assert not [r for r in fake_gitlab.received if r.path == "/chat" and r.json == {}]


def test_one_commit_built_on_two_refs_keeps_each_refs_status(
    container: Container, sender: NotificationSender, fake_gitlab: FakeGitlab, repos: Repos,
    clock: Clock,
) -> None:  # fmt: skip
    from conveyor.domain.principals import Principal
    from conveyor.domain.tasks import RepoRequest
    from conveyor.services.tasks import CreateRequest, TargetRequest

    sha = repos.voting.head("master")
    repos.voting.commit("elsewhere", branch="other")
    from tests.conftest import git

    git(repos.voting.path, "branch", "-f", "same", sha)  # a second branch at the same commit
    alice = Principal("alice", ("admin",))
    first = create(container)
    second = container.tasks.create(
        alice,
        CreateRequest(WF, "dev", (TargetRequest("redis3", (RepoRequest("voting-app", "same"),)),)),
    )
    run_to(container, first, TaskState.PASSED, clock())
    assert container.jobs.start_task(second, clock()) is not None
    deliver(sender)
    by_ref = {s["ref"]: s["state"] for s in fake_gitlab.statuses(sha)}
    assert by_ref == {"master": "success", "same": "running"}
