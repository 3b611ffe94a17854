"""The configuration users write, as a model: every key with its type, default and
description. Reading and checking a file is config_file.py's; the checks across parts
are config_checks.py's. Nothing happens at import time.
"""

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.domain.durations import parse_duration
from conveyor.domain.masking import url_secrets
from conveyor.domain.refs import branch_name_problem

PERMISSIONS = ("task:view", "task:create", "task:restart", "task:cancel")
Permission = Literal["task:view", "task:create", "task:restart", "task:cancel"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _check_branch(value: str) -> str:
    problem = branch_name_problem(value)
    if problem:
        raise ValueError(f"branch name {value!r} {problem}")
    return value


def _check_public_url(value: str) -> str:
    problem = f"must be an http(s) URL, not {value!r}"
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value) or len(value) > 2000:
        raise ValueError(problem)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
        (parts.hostname or "").encode("idna")
    except (ValueError, UnicodeError) as exc:
        raise ValueError(f"{problem}: {exc}") from exc
    if not parts.hostname:
        raise ValueError(problem)
    return value.rstrip("/")


Seconds = Annotated[int, BeforeValidator(parse_duration)]
BranchName = Annotated[StrictStr, AfterValidator(_check_branch)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepoConfig(_Strict):
    url: StrictStr = Field(min_length=1, description="git URL or local path of the repository")
    default_branch: BranchName = Field("main", description="branch built when a request omits it")
    gitlab_project: StrictStr | StrictInt | None = Field(
        None,
        description="the repo's GitLab project (path_with_namespace, or the numeric id): "
        "hooks from it start tasks, and tasks report commit statuses to it",
    )
    gitlab_webhook_secret: StrictStr | None = Field(
        None,
        description="a webhook secret for this repo's project alone: its hooks must carry "
        "it, and gitlab.webhook_secret no longer starts its tasks; `env:NAME` reads it "
        "from the environment",
    )


class BuildConfig(_Strict):
    repos: list[StrictStr] = Field(min_length=1, description="repos checked out for the build")
    script: StrictStr = Field(min_length=1, description="bash script run in the workspace")
    variables: dict[StrictStr, StrictStr] = Field(
        default_factory=dict,
        description="the variables a task's `targets[].envs` may set, with their defaults; "
        "they reach the build only",
    )
    outputs: list[StrictStr] = Field(
        default_factory=list,
        description="names the build may hand its deploy through $CONVEYOR_OUTPUT",
    )
    timeout: Seconds = Field(3600, description="build step timeout (default 1h)")
    queue: StrictStr | None = Field(None, description="celery queue; default: `queue`")


class DeployConfig(_Strict):
    script: StrictStr = Field(min_length=1, description="bash script run in the workspace")
    timeout: Seconds = Field(600, description="deploy step timeout (default 10m)")
    queue: StrictStr | None = Field(None, description="celery queue; default: `queue`")
    checkout: StrictBool = Field(
        True,
        description="false: the deploy runs in an empty workspace, without its build's "
        "repos checked out (GitLab's GIT_STRATEGY: none); their commit variables are set",
    )


Sandbox = Literal["none", "bubblewrap"]


class ServiceConfig(_Strict):
    build: BuildConfig
    deploy: DeployConfig
    sandbox: Sandbox | None = Field(None, description="overrides the config-wide `sandbox`")
    network: StrictBool = Field(
        True, description="false: the service's jobs get no network (needs bubblewrap)"
    )


class EnvConfig(_Strict):
    vars: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    secrets: dict[StrictStr, StrictStr] = Field(
        default_factory=dict,
        description="variables like vars whose values are masked in job logs; "
        "a value `env:NAME` is read from the server's environment",
    )

    def resolved_secrets(self) -> dict[str, str]:
        """The secrets' values: `env:NAME` read from this process's environment."""
        return {
            k: os.environ.get(v.removeprefix("env:"), "") if v.startswith("env:") else v
            for k, v in self.secrets.items()
        }


HookEvent = Literal["push", "merge_request", "tag"]


class TriggerConfig(_Strict):
    event: HookEvent = Field(description="push, merge_request or tag")
    repo: StrictStr = Field(description="the repo whose GitLab hook starts a task")
    branches: list[StrictStr] | None = Field(
        None, min_length=1, description="push: glob patterns of branch names (default: all)"
    )
    target_branches: list[StrictStr] | None = Field(
        None,
        min_length=1,
        description="merge_request: glob patterns of target branches (default: all)",
    )
    tags: list[StrictStr] | None = Field(
        None, min_length=1, description="tag: glob patterns of tag names (default: all)"
    )
    services: list[StrictStr] | None = Field(
        None,
        min_length=1,
        description="the services to build; default: every service of the workflow whose "
        "build uses the repo",
    )
    forks: StrictBool | None = Field(
        None,
        description="merge_request: also build merge requests from forks (their code "
        "runs with the env's secrets); default false",
    )

    @property
    def patterns(self) -> list[str]:
        """The glob patterns the event's branch, target branch or tag must match."""
        given = {"push": self.branches, "merge_request": self.target_branches, "tag": self.tags}
        return given[self.event] or ["*"]


class WorkflowConfig(_Strict):
    env: StrictStr = Field(description="the workflow's default environment")
    envs: list[StrictStr] = Field(default_factory=list, description="other allowed environments")
    services: list[StrictStr] = Field(min_length=1)
    parallel: StrictBool = Field(False, description="run this workflow's tasks at once")
    auto_cancel: StrictBool = Field(
        False,
        description="a task a hook starts cancels the created or running tasks hooks "
        "started before it for the same branch or merge request",
    )
    triggers: list[TriggerConfig] = Field(
        default_factory=list, description="GitLab events that start a task (docs/gitlab.md)"
    )

    @property
    def allowed_envs(self) -> frozenset[str]:
        return frozenset([self.env, *self.envs])


class RoleConfig(_Strict):
    permissions: list[Permission] = Field(min_length=1)
    workflows: list[StrictStr] = Field(min_length=1, description="glob patterns of workflow names")


class GitlabConfig(_Strict):
    url: Annotated[StrictStr, AfterValidator(_check_public_url)] = Field(
        description="GitLab's address; its API is at <url>/api/v4"
    )
    token: StrictStr | None = Field(
        None,
        description="a token with the api scope, to post commit statuses; `env:NAME` "
        "reads it from the server's environment; none: no statuses are posted",
    )
    webhook_secret: StrictStr | None = Field(
        None,
        description="what GitLab sends as X-Gitlab-Token; `env:NAME` reads it from the "
        "environment; none: POST /api/hooks/gitlab is refused",
    )

    def resolved_token(self) -> str | None:
        return resolve_secret(self.token)

    def resolved_webhook_secret(self) -> str | None:
        return resolve_secret(self.webhook_secret)


TaskEventName = Literal[
    "task.created", "task.running", "task.passed", "task.failed", "task.timeout", "task.cancelled"
]
TASK_EVENTS: tuple[TaskEventName, ...] = (
    "task.created",
    "task.running",
    "task.passed",
    "task.failed",
    "task.timeout",
    "task.cancelled",
)


class NotificationConfig(_Strict):
    url: Annotated[StrictStr, AfterValidator(_check_public_url)] = Field(
        description="where each event is POSTed as JSON"
    )
    secret: StrictStr | None = Field(
        None,
        description="signs each body: X-Conveyor-Signature: sha256=<HMAC-SHA256 of the "
        "body>; `env:NAME` reads it from the environment",
    )
    events: list[TaskEventName] = Field(
        default_factory=lambda: list(TASK_EVENTS), min_length=1, description="which events"
    )
    workflows: list[StrictStr] = Field(
        default_factory=lambda: ["*"], min_length=1, description="glob patterns of workflows"
    )

    def resolved_secret(self) -> str | None:
        return resolve_secret(self.secret)


def resolve_secret(value: str | None) -> str | None:
    """A secret as written (`env:NAME` read from this process's environment)."""
    if value is None or not value.startswith("env:"):
        return value
    return os.environ.get(value.removeprefix("env:"))


class Config(_Strict):
    public_url: Annotated[StrictStr, AfterValidator(_check_public_url)] = "http://127.0.0.1:8080"
    database_url: StrictStr = "sqlite:///conveyor.db"
    executor: Literal["local", "celery"] = "local"
    broker_url: StrictStr | None = None
    queue: StrictStr = Field("conveyor", description="celery queue of jobs naming none")
    data_dir: Path = Path(".conveyor")
    max_parallel_tasks: StrictInt = Field(4, ge=1, le=1000, description="tasks running at once")
    max_parallel_jobs: StrictInt = Field(
        8, ge=1, le=1000, description="job processes at once (local)"
    )
    cancel_grace: Seconds = Field(10, description="SIGTERM to SIGKILL on cancel or timeout")
    heartbeat_timeout: Seconds = Field(60, description="a running job silent this long is lost")
    queue_timeout: Seconds = Field(
        3600, description="celery: a job no worker takes this long after it was sent fails"
    )
    log_max_bytes: StrictInt = Field(
        50 * 2**20, ge=1024, description="per job log; the rest is cut"
    )
    sandbox: Sandbox = Field(
        "none", description="how jobs are confined: none, or bubblewrap (docs/security.md)"
    )
    run_as: StrictStr | None = Field(
        None, description="an unprivileged user that jobs run as (the runner must be root)"
    )
    repos: dict[StrictStr, RepoConfig] = Field(default_factory=dict)
    services: dict[StrictStr, ServiceConfig] = Field(default_factory=dict)
    envs: dict[StrictStr, EnvConfig] = Field(default_factory=dict)
    workflows: dict[StrictStr, WorkflowConfig] = Field(default_factory=dict)
    roles: dict[StrictStr, RoleConfig] = Field(default_factory=dict)
    gitlab: GitlabConfig | None = Field(None, description="hooks in, commit statuses out")
    notifications: list[NotificationConfig] = Field(
        default_factory=list, description="HTTP endpoints told of task events"
    )
    metrics_token: StrictStr | None = Field(
        None,
        description="a token Prometheus must send (`Authorization: Bearer …`) to read "
        "/metrics; `env:NAME` reads it from the environment; none: /metrics is open",
    )
    # The file this config was read from, if any: a sandboxed job must not see it.
    _source: Path | None = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        return self._source

    def sandbox_of(self, service: str) -> Sandbox:
        svc = self.services.get(service)
        return svc.sandbox if svc is not None and svc.sandbox is not None else self.sandbox

    def network_of(self, service: str) -> bool:
        svc = self.services.get(service)
        return svc.network if svc is not None else True

    def secret_values(self) -> list[str]:
        """Every secret of every env, and the credentials in repo URLs: masked in every
        job's log, whatever its env."""
        values = [v for env in self.envs.values() for v in env.resolved_secrets().values()]
        if self.gitlab is not None:
            values += [
                v
                for v in (self.gitlab.resolved_token(), self.gitlab.resolved_webhook_secret())
                if v
            ]
        values += [v for n in self.notifications if (v := n.resolved_secret())]
        values += [v for v in (resolve_secret(self.metrics_token),) if v]
        values += [v for r in self.repos.values() if (v := resolve_secret(r.gitlab_webhook_secret))]
        # A chat service's hook URL is its own credential (in its path or user part).
        values += [s for n in self.notifications for s in [*url_secrets(n.url), n.url]]
        return values + [s for repo in self.repos.values() for s in url_secrets(repo.url)]


class EnvOverrides(BaseSettings):
    """Values that deployments keep out of the file (a database password, say)."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    database_url: str | None = None
    public_url: str | None = None
    broker_url: str | None = None


def format_loc(loc: Iterable[int | str]) -> str:
    """('services', 'redis3', 'build', 'repos', 1) -> 'services.redis3.build.repos[1]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
