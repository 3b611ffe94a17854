"""The executor interface: a job goes in as plain data, reports come out."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from conveyor.domain.tasks import ResolvedRepo


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything a runner needs, as data; travels to other machines as JSON."""

    job_id: int
    task_pk: int
    workflow_name: str
    task_id: int
    attempt: int
    stage: str
    service: str
    env_name: str
    repos: tuple[ResolvedRepo, ...]
    script: str
    timeout_s: int
    variables: tuple[tuple[str, str], ...]
    # Values to export and to mask in the log; kept out of repr().
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    cancel_grace_s: int = 10
    log_max_bytes: int = 50 * 2**20


@dataclass(frozen=True, slots=True)
class JobResult:
    outcome: Outcome
    exit_code: int | None
    detail: str
    outputs: dict[str, str] = field(default_factory=dict)


class JobReporter(Protocol):
    """How a runner tells the database what happens; it decides nothing."""

    def heartbeat(self) -> None: ...

    def cancel_requested(self) -> bool: ...

    def finished(self, result: JobResult) -> None: ...


class Executor(Protocol):
    def submit(self, job: JobSpec) -> None: ...

    def shutdown(self, wait: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class RunnerPaths:
    """Where a runner keeps git mirrors, job workspaces and job logs."""

    data_dir: Path

    @property
    def mirrors(self) -> Path:
        return self.data_dir / "mirrors"

    @property
    def workspaces(self) -> Path:
        return self.data_dir / "workspaces"

    def log(self, job_id: int) -> Path:
        return self.data_dir / "logs" / f"{job_id}.log"
