"""A task and what it is made of: its request, its resolved repos, its captured spec."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from conveyor.domain.states import TaskState


class RefKind(StrEnum):
    BRANCH = "branch"
    MERGE_REQUEST = "merge_request"


@dataclass(frozen=True, slots=True)
class RepoRequest:
    """One repo of a target as the caller asked for it (or as defaulted from config)."""

    repo_name: str
    branch: str
    pr: int = 0
    commit: str | None = None
    """Pinned by a hook: the pushed commit, or the merge request's head; None: resolved
    from `branch` (and the merge request) when the task is created."""


@dataclass(frozen=True, slots=True)
class ResolvedRepo:
    """A repo pinned to commits at create time.

    `commit` is what gets built: the branch head, or the merge request head when
    `pr > 0`, in which case `base_commit` is the branch head it is merged onto.
    """

    repo_name: str
    url: str
    branch: str
    pr: int
    commit: str
    base_commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "repo_name": self.repo_name,
            "url": self.url,
            "branch": self.branch,
            "pr": self.pr,
            "commit": self.commit,
            "base_commit": self.base_commit,
        }

    def commits(self) -> list[tuple[RefKind, str, str]]:
        """(kind, ref, commit) for every commit this repo pins."""
        if self.pr > 0:
            found = [(RefKind.MERGE_REQUEST, f"refs/merge-requests/{self.pr}/head", self.commit)]
            if self.base_commit is not None:
                found.append((RefKind.BRANCH, self.branch, self.base_commit))
            return found
        return [(RefKind.BRANCH, self.branch, self.commit)]


@dataclass(frozen=True, slots=True)
class StepSpec:
    script: str
    timeout_s: int
    queue: str | None = None
    outputs: tuple[str, ...] = ()  # a build's declared outputs, handed to its deploy
    checkout: bool = True  # False: the job's workspace starts empty (deploy.checkout)

    def to_json(self) -> dict[str, Any]:
        return {
            "script": self.script,
            "timeout_s": self.timeout_s,
            "queue": self.queue,
            "outputs": list(self.outputs),
            "checkout": self.checkout,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StepSpec":
        # Tasks stored before a key existed get its default.
        outputs = tuple(data.get("outputs", ()))
        return cls(
            data["script"], data["timeout_s"], data["queue"], outputs, data.get("checkout", True)
        )


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One service of a task, with everything needed to rerun it identically."""

    service: str
    repos: tuple[ResolvedRepo, ...]
    build: StepSpec
    deploy: StepSpec
    envs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """The inputs of a task, captured at create time and never re-read from config."""

    workflow_name: str
    env_name: str
    env_vars: tuple[tuple[str, str], ...]
    targets: tuple[TargetSpec, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_name": self.workflow_name,
            "env_name": self.env_name,
            "env_vars": [list(kv) for kv in self.env_vars],
            "targets": [
                {
                    "service": t.service,
                    "repos": [r.to_json() for r in t.repos],
                    "build": t.build.to_json(),
                    "deploy": t.deploy.to_json(),
                    "envs": [list(kv) for kv in t.envs],
                }
                for t in self.targets
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TaskSpec":
        return cls(
            workflow_name=data["workflow_name"],
            env_name=data["env_name"],
            env_vars=tuple((k, v) for k, v in data["env_vars"]),
            targets=tuple(
                TargetSpec(
                    service=t["service"],
                    repos=tuple(ResolvedRepo(**r) for r in t["repos"]),
                    build=StepSpec.from_json(t["build"]),
                    deploy=StepSpec.from_json(t["deploy"]),
                    envs=tuple((k, v) for k, v in t["envs"]),
                )
                for t in data["targets"]
            ),
        )


@dataclass(frozen=True, slots=True)
class Task:
    pk: int
    workflow_name: str
    task_id: int
    env_name: str
    state: TaskState
    attempt: int
    create_time: int
    start_time: int | None
    end_time: int | None
