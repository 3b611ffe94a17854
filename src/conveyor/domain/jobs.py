"""A job as data: what a runner is given, and what it reports back."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from conveyor.domain.states import JobState
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
    # The env's secrets, exported to the job; kept out of repr().
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Every secret value the runner knows, masked in the log whatever the job's env.
    masked: tuple[str, ...] = field(default=(), repr=False)
    cancel_grace_s: int = 10
    log_max_bytes: int = 50 * 2**20
    heartbeat_s: float = 5.0
    queue: str = "conveyor"
    sandbox: str = "none"  # or "bubblewrap"; a worker applies its own config's
    network: bool = True
    outputs: tuple[str, ...] = ()  # a build's declared outputs
    # False: the workspace starts empty; the repos' commit variables are set all the same.
    # (A message from a server before this field has none: the default applies.)
    checkout: bool = True

    def to_json(self) -> dict[str, Any]:
        """The job as a message: everything but the secrets, which each worker resolves
        from its own config, so they never travel through the broker."""
        data = {f: getattr(self, f) for f in self.__slots__ if f not in ("secrets", "masked")}
        data["repos"] = [r.to_json() for r in self.repos]
        data["variables"] = [list(kv) for kv in self.variables]
        data["outputs"] = list(self.outputs)
        if self.checkout:
            # Sent only when it says something: a worker from before the field exists
            # cannot read a key it does not know, and checks out by default anyway.
            del data["checkout"]
        return data

    @classmethod
    def from_json(
        cls, data: dict[str, Any], secrets: Mapping[str, str], masked: tuple[str, ...]
    ) -> "JobSpec":
        # Keys of a newer server's message that this runner does not know are left out:
        # it runs the job as it knows how (the isolation is its own config's anyway).
        known = set(cls.__slots__) - {"secrets", "masked"}
        fields = {k: v for k, v in data.items() if k in known}
        fields["repos"] = tuple(ResolvedRepo(**r) for r in data["repos"])
        fields["variables"] = tuple((k, v) for k, v in data["variables"])
        fields["outputs"] = tuple(data.get("outputs", ()))
        return cls(**fields, secrets=secrets, masked=masked)


@dataclass(frozen=True, slots=True)
class JobResult:
    outcome: Outcome
    exit_code: int | None
    detail: str
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job as the scheduler sees it."""

    id: int
    task_pk: int
    attempt: int
    stage: str
    service: str
    state: JobState
    outputs: dict[str, str]
