"""The executor interface: a job goes in as plain data, reports come out."""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from conveyor.domain.jobs import JobResult


class LogSink(Protocol):
    """Where a job's log bytes go, already masked and capped by the runner."""

    def append(self, data: bytes) -> None: ...

    def flush_if_due(self) -> None: ...

    def close(self) -> None: ...


class FileLogSink:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")

    def append(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    def flush_if_due(self) -> None:
        pass

    def close(self) -> None:
        self._file.close()


class JobReporter(Protocol):
    """How a runner tells the database what happens; it decides nothing."""

    def claim(self) -> bool:
        """Take the job for this runner; False if another runner has it, or it ended."""
        ...

    def started(self, pid: int) -> None: ...

    def heartbeat(self) -> None: ...

    def cancel_requested(self) -> bool: ...

    def finished(self, result: JobResult) -> None: ...


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


class FileLogStore:
    """Job logs as the local runner writes them, under the data directory."""

    def __init__(self, paths: RunnerPaths) -> None:
        self._paths = paths

    def read(self, job_id: int, offset: int, limit: int) -> tuple[bytes, int]:
        path = self._paths.log(job_id)
        try:
            with path.open("rb") as f:
                size = f.seek(0, 2)
                f.seek(min(offset, size))
                return f.read(limit), size
        except FileNotFoundError:
            return b"", 0
