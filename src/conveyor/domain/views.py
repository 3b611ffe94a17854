"""Read views: what the stores hand back when a task is looked at, not changed."""

from dataclasses import dataclass, field

from conveyor.domain.tasks import RefKind, Task


@dataclass(frozen=True, slots=True)
class CommitMatch:
    service: str
    repo_name: str
    kind: RefKind
    ref: str
    commit: str


@dataclass(frozen=True, slots=True)
class TaskWithCommits:
    """A task found by commit, with the commits of it that matched."""

    task: Task
    matches: tuple[CommitMatch, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class JobView:
    id: int
    attempt: int
    stage: str
    service: str
    state: str
    start_time: int | None
    end_time: int | None
    exit_code: int | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class AttemptView:
    number: int
    requested_by: str
    create_time: int
    start_time: int | None
    end_time: int | None
    state: str | None


@dataclass(frozen=True, slots=True)
class TaskDetail:
    task: Task
    created_by: str
    commits: tuple[CommitMatch, ...]
    jobs: tuple[JobView, ...]
    attempts: tuple[AttemptView, ...]


@dataclass(frozen=True, slots=True)
class WorkflowSummary:
    """A workflow as its list shows it: its newest task, and how many run and wait."""

    name: str
    latest: Task | None
    running: int
    waiting: int
