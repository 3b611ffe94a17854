"""What a task's change of status tells GitLab and other systems, and how a delivery
attempt's answer is judged. Pure rules: storage writes the messages, a sender sends them.
"""

import email.utils
import fnmatch
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

from conveyor.domain.states import PublicStatus
from conveyor.domain.tasks import RefKind

GITLAB = "gitlab"
WEBHOOK = "webhook"

GITLAB_STATE = {
    PublicStatus.CREATED: "pending",
    PublicStatus.RUNNING: "running",
    PublicStatus.PASSED: "success",
    PublicStatus.FAILED: "failed",
    PublicStatus.TIMEOUT: "failed",
    PublicStatus.CANCELLED: "canceled",
}
# GitLab keeps at most this many characters of a status's description.
MAX_DESCRIPTION = 255


@dataclass(frozen=True, slots=True)
class CommitFact:
    repo_name: str
    kind: RefKind
    ref: str
    pr: int
    commit: str


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """A task as it is in the transaction that changed its status."""

    workflow_name: str
    task_id: int
    attempt: int
    status: PublicStatus
    created_by: str
    create_time: int
    start_time: int | None
    end_time: int | None
    commits: tuple[CommitFact, ...]
    failed_job: tuple[str, str, str] | None = None
    """(stage, service, detail) of the first job that failed or timed out."""


@dataclass(frozen=True, slots=True)
class Message:
    """One notification to deliver: `key` orders it among others (per GitLab commit
    status, per task and URL); with `coalesce`, only the latest of a key is sent."""

    channel: str
    key: str
    url: str
    event: str
    body: str
    coalesce: bool
    delivery_id: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    events: frozenset[str]
    workflows: tuple[str, ...]

    def wants(self, workflow_name: str) -> bool:
        return any(fnmatch.fnmatchcase(workflow_name, p) for p in self.workflows)


@dataclass(frozen=True)
class NotifyPolicy:
    """Who hears of a task's changes: GitLab (for repos with a project, when a token is
    configured) and each notification endpoint whose workflows and events match."""

    public_url: str
    gitlab_api: str | None = None
    projects: Mapping[str, str | int] = field(default_factory=dict)
    endpoints: tuple[Endpoint, ...] = ()

    def wants(self, workflow_name: str) -> bool:
        """Whether a change of this workflow's task may produce any message."""
        return bool(self.gitlab_api and self.projects) or any(
            e.wants(workflow_name) for e in self.endpoints
        )

    def task_url(self, workflow_name: str, task_id: int) -> str:
        return f"{self.public_url}/workflows/{workflow_name}/tasks/{task_id}"

    def messages(self, facts: TaskFacts, new_id: Callable[[], str]) -> list[Message]:
        return [*self._statuses(facts, new_id), *self._events(facts, new_id)]

    def _statuses(self, facts: TaskFacts, new_id: Callable[[], str]) -> list[Message]:
        if self.gitlab_api is None:
            return []
        name = f"conveyor/{facts.workflow_name}"
        body: dict[str, Any] = {
            "state": GITLAB_STATE[facts.status],
            "name": name,
            "target_url": self.task_url(facts.workflow_name, facts.task_id),
            "description": describe(facts),
        }
        out: dict[tuple[str, str], Message] = {}
        event = f"task.{facts.status.value}"
        for c in facts.commits:
            project = self.projects.get(c.repo_name)
            # A merge request's status goes on its head commit, not on the branch head
            # it is merged onto.
            if project is None or (c.kind is RefKind.BRANCH and c.pr > 0):
                continue
            path = quote(str(project), safe="")
            if (str(project), c.commit) in out:
                continue  # the same commit of one repo, built by two services
            out[(str(project), c.commit)] = Message(
                GITLAB,
                # GitLab files a status per (sha, ref, name): one pipeline per ref.
                key_of(GITLAB, str(project), c.commit, name, c.ref),
                f"{self.gitlab_api}/projects/{path}/statuses/{c.commit}",
                event,
                # For a merge request, its head ref (refs/merge-requests/N/head): its
                # head may be in no branch of the target (a fork's), and GitLab needs a
                # ref to file the status under, as its own MR pipelines do.
                json.dumps({**body, "ref": c.ref}, separators=(",", ":")),
                coalesce=True,
                delivery_id=new_id(),
            )
        return list(out.values())

    def _events(self, facts: TaskFacts, new_id: Callable[[], str]) -> list[Message]:
        event = f"task.{facts.status.value}"
        out = []
        for endpoint in self.endpoints:
            if event not in endpoint.events or not endpoint.wants(facts.workflow_name):
                continue
            delivery = new_id()
            body = event_body(facts, event, delivery, self.task_url)
            out.append(
                Message(
                    WEBHOOK,
                    key_of(WEBHOOK, endpoint.url, facts.workflow_name, str(facts.task_id)),
                    endpoint.url,
                    event,
                    json.dumps(body, separators=(",", ":")),
                    coalesce=False,
                    delivery_id=delivery,
                )
            )
        return out


def key_of(*parts: str) -> str:
    """The ordering key of a message, of bounded length whatever a URL or a project
    path holds: GitLab's (project, sha, name), or a webhook's (URL, task)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def shown_url(url: str) -> str:
    """A notification URL fit for logs and listings: no credentials, and no path
    (chat services put their secret there)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an invalid URL)"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}/…" if parts.path.strip("/") else f"{parts.scheme}://{host}"


def event_body(
    facts: TaskFacts, event: str, delivery: str, task_url: Callable[[str, int], str]
) -> dict[str, Any]:
    return {
        "event": event,
        "delivery": delivery,
        "workflow_name": facts.workflow_name,
        "task_id": facts.task_id,
        "attempt": facts.attempt,
        "status": facts.status.value,
        "description": describe(facts),
        "url": task_url(facts.workflow_name, facts.task_id),
        "created_by": facts.created_by,
        "create_time": facts.create_time,
        "start_time": facts.start_time,
        "end_time": facts.end_time,
        "commits": [
            {
                "repo_name": c.repo_name,
                "kind": c.kind.value,
                "ref": c.ref,
                "pr": c.pr,
                "commit": c.commit,
            }
            for c in facts.commits
        ],
    }


def describe(facts: TaskFacts) -> str:
    """A line for the commit's status: what happened, and for a failure, where."""
    status = facts.status
    again = f" (attempt {facts.attempt})" if facts.attempt > 1 else ""
    if status is PublicStatus.CREATED:
        text = f"waiting to run{again}"
    elif status is PublicStatus.RUNNING:
        text = f"running{again}"
    elif status is PublicStatus.PASSED:
        took = ""
        if facts.start_time is not None and facts.end_time is not None:
            took = f" in {facts.end_time - facts.start_time}s"
        text = f"passed{took}"
    elif status is PublicStatus.CANCELLED:
        text = "cancelled"
    elif facts.failed_job is not None:
        stage, service, detail = facts.failed_job
        if status is PublicStatus.TIMEOUT:
            text = f"{stage} {service} {detail or 'timed out'}"
        else:
            text = f"{stage} {service} failed: {detail or 'no reason recorded'}"
    else:
        text = status.value
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


# -- judging an attempt ------------------------------------------------------------


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    reason: str = ""
    retry_after_s: float | None = None


# GitLab answers a status it already has (a repeated state) with this 400.
_ALREADY = "Cannot transition status"
MAX_RETRY_AFTER_S = 3600.0


def judge(
    channel: str, status: int, headers: Mapping[str, str], text: str, now: float | None = None
) -> Judgement:
    """What an HTTP answer means for the message: delivered, to retry, or to drop."""
    if 200 <= status < 300:
        return Judgement(Verdict.DELIVERED)
    snippet = " ".join(text.split())[:300]
    reason = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
    if channel == GITLAB and status == 400 and _ALREADY in text:
        return Judgement(Verdict.DELIVERED, "GitLab has this state already")
    # 409: GitLab timed out waiting for its lock on the commit's statuses; retry.
    if status in (408, 409, 425, 429) or status >= 500:
        return Judgement(Verdict.RETRY, reason, retry_after(headers, now))
    return Judgement(Verdict.DROP, reason)


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Retry-After as seconds from now (RFC 9110 10.2.3: seconds, or an HTTP date)."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when - (time.time() if now is None else now), MAX_RETRY_AFTER_S))


BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0


def backoff_s(attempts: int, retry_after_s: float | None = None) -> float:
    """How long to wait after the `attempts`-th failed attempt: doubling from 1 s to
    5 min, or what the server asked for if that is longer."""
    wait: float = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** max(0, attempts - 1))
    return max(wait, retry_after_s or 0.0)


def coalesce_order(keys: Sequence[tuple[int, str, bool]]) -> list[int]:
    """Of waiting messages (id, key, coalesce) in id order, the one per key to send now:
    the latest of a coalescing key (the ones before it are superseded), the oldest of
    another."""
    chosen: dict[str, int] = {}
    for msg_id, key, coalesce in keys:
        if coalesce or key not in chosen:
            chosen[key] = msg_id
    return sorted(chosen.values())
