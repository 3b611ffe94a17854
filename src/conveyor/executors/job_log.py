"""A job's log as its output comes: secrets masked wherever they fall, capped, stored."""

import threading
from collections.abc import Iterable

from conveyor.domain.masking import SecretPatterns, StreamMasker
from conveyor.executors.base import LogSink


class JobLog:
    """A job's log as output comes: secrets masked wherever they fall, capped, handed to
    a sink."""

    def __init__(self, sink: LogSink, max_bytes: int, secrets: Iterable[str]) -> None:
        self._sink = sink
        self._max = max_bytes
        self._size = 0
        self._truncated = False
        self._masker = StreamMasker(SecretPatterns(secrets))
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._append(self._masker.feed(data))

    def _append(self, data: bytes) -> None:
        if self._truncated or not data:
            return
        room = self._max - self._size
        if len(data) > room:
            data = data[:room] + f"\n[conveyor] log truncated at {self._max} bytes\n".encode()
            self._truncated = True
        self._sink.append(data)
        self._size += len(data)

    def flush_if_due(self) -> None:
        with self._lock:
            self._sink.flush_if_due()

    def say(self, line: str) -> None:
        self.write(f"[conveyor] {line}\n".encode())

    def close(self) -> None:
        with self._lock:
            self._append(self._masker.flush())
            self._sink.close()
