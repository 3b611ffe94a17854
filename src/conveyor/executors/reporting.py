"""How a runner reports what happens to its job: to the database, through this."""

from typing import Protocol

from conveyor.domain.jobs import JobResult


class JobReporter(Protocol):
    """How a runner tells the database what happens; it decides nothing."""

    def claim(self) -> bool:
        """Take the job for this runner; False if another runner has it, or it ended."""
        ...

    def started(self, pid: int) -> None:
        """The script runs as `pid`: for people, recorded with the next write."""
        ...

    def heartbeat(self) -> None: ...

    def cancel_requested(self) -> bool: ...

    def finished(self, result: JobResult) -> None: ...
