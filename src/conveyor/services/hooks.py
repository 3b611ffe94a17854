"""GitLab's Push, Tag Push and Merge Request hooks: which triggers they match, and the
tasks they start through the same create path as the API (docs/gitlab.md)."""

import fnmatch
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.domain.errors import AuthFailed, InvalidParam, RequestError, UpstreamError
from conveyor.domain.principals import Principal
from conveyor.domain.tasks import RepoRequest
from conveyor.services.tasks import CreateRequest, HookTask, TargetRequest, TaskService
from conveyor.settings import Config, TriggerConfig, resolve_secret

log = logging.getLogger("conveyor.hooks")

ZERO_SHA = "0" * 40
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_USER = 200  # a task's created_by
# Merge request actions that bring code to build; `update` only with new commits.
_MR_BUILDS = ("open", "reopen", "update")


@dataclass(frozen=True, slots=True)
class HookEvent:
    """What a hook says happened, in the terms triggers match on."""

    event: str  # push, tag, merge_request
    project_path: str
    project_id: int | None
    ref: str  # the branch pushed, the tag, or the merge request's target branch
    commit: str
    pr: int = 0
    fork: str | None = None  # a merge request's source project, when not the target

    @property
    def head_ref(self) -> str:
        """The ref whose head this event's commit should be, if the event is current."""
        if self.event == "merge_request":
            return f"refs/merge-requests/{self.pr}/head"
        return f"refs/{'tags' if self.event == 'tag' else 'heads'}/{self.ref}"

    @property
    def what(self) -> str:
        if self.event == "merge_request":
            return f"merge request !{self.pr} of {self.project_path} into {self.ref}"
        kind = "tag" if self.event == "tag" else "branch"
        return f"{kind} {self.ref} of {self.project_path} at {self.commit[:12]}"


@dataclass(frozen=True, slots=True)
class HookGrant:
    """What a hook's secret lets it start: with the config-wide secret, tasks of repos
    without a secret of their own; with a repo's own secret, that repo's."""

    wide: bool
    repos: frozenset[str]
    guarded: frozenset[str]

    def allows(self, repo: str) -> bool:
        return repo in self.repos if repo in self.guarded else self.wide


@dataclass(frozen=True, slots=True)
class HookAnswer:
    tasks: list[tuple[str, int]]
    detail: str


def _field(payload: Mapping[str, Any], path: str, kind: type) -> Any:
    """payload['a']['b'] for 'a.b', of type `kind`, or a 400 naming the field."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise InvalidParam(f"{path}: required")
        value = value[part]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidParam(f"{path}: must be a {kind.__name__}")
    return value


def _project(payload: Mapping[str, Any]) -> tuple[str, int | None]:
    path = _field(payload, "project.path_with_namespace", str)
    if _CONTROL.search(path) or len(path) > 1000:
        # It becomes a task's creator, shown in logs and pages.
        raise InvalidParam("project.path_with_namespace: not a GitLab project path")
    project_id = payload["project"].get("id")
    return path, project_id if isinstance(project_id, int) else None


# object_kind -> (the trigger event, the ref prefix, what it names)
_PUSHES = {"push": ("push", "refs/heads/", "branch"), "tag_push": ("tag", "refs/tags/", "tag")}


def parse_hook(event_header: str | None, payload: Mapping[str, Any]) -> HookEvent | str:
    """The event a GitLab hook body describes, or why it starts nothing."""
    kind = payload.get("object_kind")
    if isinstance(kind, str) and kind in _PUSHES:
        event, prefix, noun = _PUSHES[kind]
        ref = _field(payload, "ref", str)
        if not ref.startswith(prefix):
            return f"{kind} to {ref!r}: not a {noun}"
        name = ref.removeprefix(prefix)
        checkout = payload.get("checkout_sha")
        if payload.get("after") == ZERO_SHA or not isinstance(checkout, str):
            return f"{noun} {name} deleted: nothing to build"
        path, pid = _project(payload)
        return HookEvent(event, path, pid, name, checkout)
    if kind == "merge_request":
        attrs = _field(payload, "object_attributes", Mapping)
        action = attrs.get("action")
        iid = _field(payload, "object_attributes.iid", int)
        if action not in _MR_BUILDS or (action == "update" and not attrs.get("oldrev")):
            shown = "update without new commits" if action == "update" else repr(action)
            return f"merge request !{iid} {shown}: nothing new to build"
        path, pid = _project(payload)
        source, target = attrs.get("source_project_id"), attrs.get("target_project_id")
        fork = None
        if source != target:
            fork = str(_field(payload, "object_attributes.source.path_with_namespace", str))
        return HookEvent(
            "merge_request",
            path,
            pid,
            _field(payload, "object_attributes.target_branch", str),
            _field(payload, "object_attributes.last_commit.id", str),
            iid,
            fork,
        )
    return f"{event_header or kind!r} events start nothing"


def trigger_key(trigger: TriggerConfig, event: HookEvent) -> str | None:
    """What a newer task of the same workflow supersedes, with auto_cancel: the same
    branch, or the same merge request. A tag is built once."""
    if event.event == "push":
        return f"push:{trigger.repo}:{event.ref}"
    if event.event == "merge_request":
        return f"merge_request:{trigger.repo}:!{event.pr}"
    return None


class HookService:
    def __init__(self, config: Config, tasks: TaskService) -> None:
        self._config = config
        self._tasks = tasks
        gitlab = config.gitlab
        secret = gitlab.resolved_webhook_secret() if gitlab is not None else None
        self._secret = secret.encode() if secret else None
        # Repos with a secret of their own: only it lets a hook start their tasks.
        self._own: dict[str, bytes] = {
            name: own.encode()
            for name, repo in config.repos.items()
            if (own := resolve_secret(repo.gitlab_webhook_secret))
        }

    def check_secret(self, given: str | None) -> HookGrant:
        """Which secret the hook carries: the config-wide one, or repos' own. Checked
        before its body is read; `HookGrant.allows` checks it against the project."""
        if self._secret is None and not self._own:
            raise AuthFailed("GitLab hooks are off here: gitlab.webhook_secret is not set")
        if given is None:
            raise AuthFailed("X-Gitlab-Token: required (the hook's secret token)")
        token = given.encode("utf-8", "surrogateescape")
        # Every comparison is made, whichever matches, so the time says nothing.
        wide = self._secret is not None and hmac.compare_digest(token, self._secret)
        repos = frozenset(n for n, own in self._own.items() if hmac.compare_digest(token, own))
        if not wide and not repos:
            raise AuthFailed("X-Gitlab-Token: not this server's webhook secret")
        return HookGrant(wide, repos, frozenset(self._own))

    def _projects_match(self, repo: str, event: HookEvent) -> bool:
        project = self._config.repos[repo].gitlab_project
        if isinstance(project, int) or (isinstance(project, str) and project.isdigit()):
            return event.project_id is not None and int(project) == event.project_id
        return project is not None and project.lower() == event.project_path.lower()

    def matches(
        self, event: HookEvent, grant: HookGrant
    ) -> tuple[list[tuple[str, int, TriggerConfig]], list[str]]:
        """(workflow, trigger index, trigger) of every trigger the event matches, and
        why triggers that would otherwise have matched did not."""
        wanted = {"push": "push", "tag": "tag", "merge_request": "merge_request"}[event.event]
        found, skipped = [], []
        for wname in sorted(self._config.workflows):
            for i, trigger in enumerate(self._config.workflows[wname].triggers):
                if (
                    trigger.event == wanted
                    and self._projects_match(trigger.repo, event)
                    and any(fnmatch.fnmatchcase(event.ref, p) for p in trigger.patterns)
                ):
                    if not grant.allows(trigger.repo):
                        why = (
                            f"repo {trigger.repo!r} has a webhook secret of its own, and the "
                            "hook did not carry it"
                            if trigger.repo in grant.guarded
                            else "the hook carried another repo's own secret"
                        )
                        skipped.append(f"workflows.{wname}.triggers[{i}]: {why}")
                        continue
                    if event.fork is not None and not trigger.forks:
                        skipped.append(
                            f"workflows.{wname}.triggers[{i}]: the merge request comes from "
                            f"the fork {event.fork} (forks: false)"
                        )
                        continue
                    found.append((wname, i, trigger))
        return found, skipped

    def _request(self, wname: str, trigger: TriggerConfig, event: HookEvent) -> CreateRequest:
        workflow = self._config.workflows[wname]
        services = trigger.services or [
            s for s in workflow.services if trigger.repo in self._config.services[s].build.repos
        ]
        repo = RepoRequest(trigger.repo, event.ref, event.pr, event.commit)
        targets = []
        for name in services:
            built = trigger.repo in self._config.services[name].build.repos
            targets.append(TargetRequest(name, (repo,) if built else ()))
        return CreateRequest(wname, workflow.env, tuple(targets))

    def receive(
        self,
        event_header: str | None,
        delivery: str | None,
        payload: Mapping[str, Any],
        grant: HookGrant,
    ) -> HookAnswer:
        """Start a task for every trigger the hook matches; a redelivery (same
        X-Gitlab-Event-UUID) starts nothing and answers the tasks of the first one."""
        parsed = parse_hook(event_header, payload)
        if isinstance(parsed, str):
            return HookAnswer([], parsed)
        if delivery is not None:
            before = self._tasks.delivered_tasks(delivery)
            if before:
                return HookAnswer(before, f"delivery {delivery} was received before")
        event = parsed
        matched, skipped = self.matches(event, grant)
        if not matched:
            why = "; ".join(skipped) or "no trigger of any workflow matches"
            return HookAnswer([], f"{event.what}: {why}")
        planned: list[HookTask] = []
        problems: list[str] = []
        current: bool | None = None
        for wname, index, trigger in matched:
            try:
                spec = self._tasks.plan(self._request(wname, trigger, event))
                # What the task builds, not only the trigger's repo: a service's other
                # repos may have a secret of their own the hook did not carry.
                for repo in {r.repo_name for t in spec.targets for r in t.repos}:
                    if not grant.allows(repo):
                        raise InvalidParam(
                            f"it would build repo {repo!r}, whose own webhook secret the "
                            "hook did not carry"
                        )
            except (RequestError, UpstreamError) as exc:
                why = exc.detail if isinstance(exc, RequestError) else str(exc)
                problems.append(f"workflows.{wname}.triggers[{index}]: {why}")
                log.warning("hook for %s: workflow %s: %s", event.what, wname, why)
                continue
            key = trigger_key(trigger, event)
            supersedes = False
            if key is not None and self._config.workflows[wname].auto_cancel:
                # Hooks may arrive out of order: only the branch's (or the merge
                # request's) head now cancels what came before it, never a late one.
                if current is None:
                    current = self._is_current(trigger.repo, event)
                supersedes = current
            planned.append(
                HookTask(
                    spec,
                    key,
                    {"hook": event.event, "delivery": delivery, "trigger": index},
                    supersedes,
                )
            )
        created = []
        if planned:
            user = f"gitlab:{event.project_path}"[:MAX_USER]
            principal = Principal(user=user, roles=())
            tasks = self._tasks.create_for_hook(principal, delivery, planned)
            if tasks is None:
                assert delivery is not None
                found = self._tasks.delivered_tasks(delivery)
                return HookAnswer(found, f"delivery {delivery} was received before")
            created = [(t.workflow_name, t.task_id) for t in tasks]
        shown = ", ".join(f"{w}#{t}" for w, t in created) or "no task"
        detail = f"{event.what}: created {shown}"
        if current is False:
            detail += f" ({event.commit[:12]} is no longer the head: nothing auto-cancelled)"
        if problems or skipped:
            detail += "; not created: " + "; ".join(problems + skipped)
        return HookAnswer(created, detail)

    def _is_current(self, repo: str, event: HookEvent) -> bool:
        try:
            return self._tasks.is_head(repo, event.head_ref, event.commit)
        except UpstreamError as exc:
            log.warning("hook for %s: cannot read the head: %s", event.what, exc)
            return False
