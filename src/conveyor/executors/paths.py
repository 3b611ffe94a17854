"""Where a runner keeps git mirrors, job workspaces and job logs on its machine."""

from dataclasses import dataclass
from pathlib import Path


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
