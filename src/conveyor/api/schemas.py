"""Request and response bodies, exactly as the API document names them."""

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from conveyor.domain.states import PublicStatus


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepoIn(_In):
    repo_name: StrictStr = Field(description="a repo of the service's build")
    branch: StrictStr = Field(description="branch to build (a valid git ref name)")
    pr: StrictInt = Field(
        0, ge=0, le=2**31 - 1, description="GitLab merge request iid; 0 builds the branch"
    )


class BuildIn(_In):
    repos: list[RepoIn] = Field(
        description="repos to build; an empty list builds every repo from its default branch"
    )


class EnvVarIn(_In):
    key: StrictStr
    value: StrictStr


class TargetIn(_In):
    name: StrictStr = Field(description="a service of the workflow")
    build: BuildIn
    envs: list[EnvVarIn] = Field(default_factory=list, description="extra build variables")


class CreateTaskIn(_In):
    workflow_name: StrictStr
    env_name: StrictStr
    targets: list[TargetIn] = Field(min_length=1)


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
    requested_by: str
    create_time: int
    start_time: int | None
    end_time: int | None


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
    commits: list[MatchedRepoOut]
    jobs: list[JobOut]
    attempts: list[AttemptOut]
