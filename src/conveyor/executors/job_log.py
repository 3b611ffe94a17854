"""A job's log as its output comes: secrets masked wherever they fall, capped, stored."""

import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from conveyor.domain.masking import SecretPatterns, StreamMasker


class LogSink(Protocol):
    """Where a job's log bytes go, already masked and capped by the runner."""

    def append(self, data: bytes) -> None: ...

    def flush_if_due(self) -> None: ...

    def close(self) -> None: ...


class JobLog:
    """A job's log as output comes: secrets masked wherever they fall, capped, handed to
    a sink. The job's output is one stream for the masker; Conveyor's own lines are
    masked apart and never release what the stream holds back, so they cannot cut a
    secret the job printed in one piece."""

    def __init__(self, sink: LogSink, max_bytes: int, secrets: Iterable[str]) -> None:
        self._sink = sink
        self._max = max_bytes
        self._size = 0
        self._truncated = False
        self._patterns = SecretPatterns(secrets)
        self._masker = StreamMasker(self._patterns)
        self._at_line_start = True
        self._lock = threading.Lock()
        self.failure: str | None = None
        """Why the log could not be written (a full disk, say): the job must end."""

    def write(self, data: bytes) -> None:
        """The job's own output."""
        with self._lock:
            self._append(self._masker.feed(data))

    def end_of_output(self) -> None:
        """The job's output has ended: what the masker held back is final now."""
        with self._lock:
            self._append(self._masker.flush())

    def say(self, line: str) -> None:
        """A line from Conveyor itself, on a line of its own."""
        masker = StreamMasker(self._patterns)
        text = masker.feed(f"[conveyor] {line}\n".encode()) + masker.flush()
        with self._lock:
            self._append(text if self._at_line_start else b"\n" + text)

    def _append(self, data: bytes) -> None:
        if self._truncated or not data or self.failure is not None:
            return
        room = self._max - self._size
        if len(data) > room:
            data = data[:room] + f"\n[conveyor] log truncated at {self._max} bytes\n".encode()
            self._truncated = True
        self._guarded(self._sink.append, data)
        self._size += len(data)
        self._at_line_start = data.endswith(b"\n")

    def _guarded(self, write: Callable[..., None], *args: bytes) -> None:
        # A log that cannot be written ends the job with the reason, never the runner.
        try:
            write(*args)
        except OSError as exc:
            self.failure = f"cannot write the job's log: {exc.strerror or exc}"

    def flush_if_due(self) -> None:
        with self._lock:
            if self.failure is None:
                self._guarded(self._sink.flush_if_due)

    def close(self) -> None:
        with self._lock:
            self._append(self._masker.flush())
            self._guarded(self._sink.close)
