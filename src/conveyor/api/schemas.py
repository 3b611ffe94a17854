"""Request and response bodies, exactly as the API document names them."""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from conveyor.domain.refs import MAX_BRANCH, MAX_PR
from conveyor.domain.states import PublicStatus
from conveyor.domain.variables import MAX_VALUE_BYTES, variable_value_problem

# The limits of the create body (docs/api.md, docs/adr/0009-input-limits.md). Names are
# stored in String(200) columns; a branch is one argument of `git ls-remote`.
MAX_NAME = 200
MAX_TARGETS = 100
MAX_REPOS = 50
MAX_ENVS = 100
MAX_ENV_KEY = 128
MAX_ENV_VALUE_BYTES = MAX_VALUE_BYTES
# The API document's own example (one repo of it: the other builds from its default).
EXAMPLE_WORKFLOW = "autoproject-workflow-dev"
EXAMPLE_CREATE: JsonDict = {
    "workflow_name": EXAMPLE_WORKFLOW,
    "env_name": "dev",
    "targets": [
        {
            "name": "redis3",
            "build": {"repos": [{"repo_name": "voting-app", "branch": "master", "pr": 0}]},
        }
    ],
}


def _short_text(value: str) -> str:
    """The spec's rule for an env value (domain/variables.py)."""
    problem = variable_value_problem(value)
    if problem:
        raise PydanticCustomError("invalid_value", "{problem}", {"problem": problem})
    return value


Name = Annotated[StrictStr, Field(max_length=MAX_NAME)]
EnvValue = Annotated[
    StrictStr,
    Field(
        max_length=MAX_ENV_VALUE_BYTES,
        description=f"at most {MAX_ENV_VALUE_BYTES} bytes of UTF-8 text; "
        "no control characters but tab",
        json_schema_extra={"pattern": "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f]*$"},
    ),
    AfterValidator(_short_text),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepoIn(_In):
    repo_name: Name = Field(description="a repo of the service's build")
    branch: StrictStr = Field(
        max_length=MAX_BRANCH, description="branch to build (a valid git ref name)"
    )
    pr: StrictInt = Field(
        0, ge=0, le=MAX_PR, description="GitLab merge request iid; 0 builds the branch"
    )


class BuildIn(_In):
    repos: list[RepoIn] = Field(
        max_length=MAX_REPOS,
        description="repos to build; an empty list builds every repo from its default branch",
    )


class EnvVarIn(_In):
    key: StrictStr = Field(max_length=MAX_ENV_KEY, description="a build variable's name")
    value: EnvValue


class TargetIn(_In):
    name: Name = Field(description="a service of the workflow")
    build: BuildIn
    envs: list[EnvVarIn] = Field(
        default_factory=list, max_length=MAX_ENVS, description="extra build variables"
    )


class CreateTaskIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_CREATE]})

    workflow_name: Name
    env_name: Name
    targets: list[TargetIn] = Field(min_length=1, max_length=MAX_TARGETS)


class CreateTaskOut(BaseModel):
    workflow_name: str
    task_id: int


class MatchedRepoOut(BaseModel):
    service: str
    repo_name: str
    kind: str = Field(description="branch or merge_request")
    ref: str
    commit: str


class TaskItemOut(BaseModel):
    task_id: int
    url: str
    status: PublicStatus
    create_time: int
    start_time: int = Field(description="create_time until the task starts")
    end_time: int = Field(description="create_time until the task ends")
    workflow_name: str
    env_name: str
    repos: list[MatchedRepoOut] = Field(description="the task's commits that matched commitId")


class ResultOut(BaseModel):
    resultCode: int  # noqa: N815 - the documented field name
    errorMsg: str  # noqa: N815


class ErrorOut(ResultOut):
    detail: str | None = None


class JobOut(BaseModel):
    id: int
    attempt: int
    stage: str = Field(description="build or deploy")
    service: str
    status: str = Field(
        description="pending, queued, running, passed, failed, timeout, cancelled or skipped"
    )
    start_time: int | None
    end_time: int | None
    exit_code: int | None
    detail: str | None = Field(description="why it ended, in a few words")
    log_url: str


class AttemptOut(BaseModel):
    number: int
    requested_by: str = Field(description="who created (1) or restarted (2 on) the task")
    create_time: int
    start_time: int | None = Field(description="null until the attempt starts")
    end_time: int | None = Field(description="null until the attempt ends")
    status: PublicStatus | None = Field(description="how the attempt ended; null until then")


class CommitOut(MatchedRepoOut):
    commit_url: str | None = Field(description="the commit on GitLab, if the repo is there")
    ref_url: str | None = Field(description="the branch or merge request on GitLab")


class TaskDetailOut(BaseModel):
    workflow_name: str
    task_id: int
    env_name: str
    status: PublicStatus
    attempt: int
    created_by: str
    create_time: int
    start_time: int
    end_time: int
    url: str
    commits: list[CommitOut]
    jobs: list[JobOut]
    attempts: list[AttemptOut]
    may_cancel: bool = Field(description="the caller may cancel it, and its state allows it")
    may_restart: bool = Field(description="the caller may restart it, and its state allows it")
    server_time: int = Field(description="the server's clock, for live elapsed times")


class RepoOut(BaseModel):
    name: str
    default_branch: str


class ServiceOut(BaseModel):
    name: str
    repos: list[RepoOut] = Field(description="the repos its build checks out")
    variables: dict[str, str] = Field(description="build variables a task may set, by default")


class WorkflowDetailOut(BaseModel):
    name: str
    env: str
    envs: list[str]
    parallel: bool
    services: list[ServiceOut]
    may_create: bool = Field(description="the caller may start a task of it")


class ReadinessOut(BaseModel):
    status: str = Field(description="ready, or not ready")
    checks: dict[str, str] = Field(
        description="database, migrations and (celery) broker: `ok`, or what is wrong"
    )


class HookTaskOut(BaseModel):
    workflow_name: str
    task_id: int


class HookOut(ResultOut):
    tasks: list[HookTaskOut] = Field(
        description="the tasks the hook started (or, for a redelivery, started the first time)"
    )
    detail: str = Field(description="what matched and what was created, or why nothing was")


class NotificationOut(BaseModel):
    id: int
    channel: str = Field(description="gitlab (a commit status) or webhook (a task event)")
    event: str = Field(description="task.created, task.running, task.passed, ...")
    url: str
    workflow_name: str
    task_id: int
    state: str = Field(description="waiting, delivered, superseded or dropped")
    attempts: int
    create_time: int
    next_time: int = Field(description="when a waiting one is tried next (unix seconds)")
    end_time: int | None
    last_error: str | None = Field(description="why the last attempt failed, or was dropped")
    delivery_id: str
    body: str = Field(description="the JSON sent")


class TaskListItemOut(TaskItemOut):
    attempt: int
    repos: list[MatchedRepoOut] = Field(description="every commit the task builds")


class TaskListOut(BaseModel):
    tasks: list[TaskListItemOut] = Field(description="newest first")
    next_before: int | None = Field(
        description="pass as `before` for the next page; null on the last page"
    )


class WorkflowOut(BaseModel):
    name: str
    env: str = Field(description="the environment its tasks deploy to by default")
    envs: list[str] = Field(description="other environments a task may name")
    services: list[str]
    parallel: bool
    latest: TaskListItemOut | None = Field(
        description="its newest task, if any (its `repos` are not listed here: see the "
        "workflow's task list)"
    )
    running: int = Field(description="tasks running (or being cancelled)")
    waiting: int = Field(description="tasks created, waiting to run")
    may_create: bool = Field(description="the caller may start a task of it")


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: StrictStr = Field(max_length=100, description="an API token, exchanged once")


class SessionOut(BaseModel):
    user: str
    roles: list[str]
    expire_time: int = Field(description="when the session ends (unix seconds)")
    csrf_token: str = Field(
        description="send as X-CSRF-Token with every request of this session that changes something"
    )
