"""How many lines of a job's stored log come before an offset, for numbering a piece read
from the middle of a long log."""

import threading
from collections import OrderedDict

from conveyor.services.ports import LogStore

BLOCK = 1024 * 1024


class LineCounts:
    """A log only grows, so the number of newlines in each whole 1 MiB block never
    changes: it is counted once and kept (for the last few hundred jobs asked about), and
    paging back through a long log reads it once, not once a page."""

    def __init__(self, logs: LogStore, keep: int = 256) -> None:
        self._logs = logs
        self._keep = keep
        self._prefix: OrderedDict[int, list[int]] = OrderedDict()  # job -> newlines before block k
        self._lock = threading.Lock()

    def before(self, job_id: int, offset: int) -> int:
        """Newlines in the stored bytes [0, offset); `offset` must be within the log."""
        block, rest = divmod(offset, BLOCK)
        counted = self._whole_blocks(job_id, block)
        if rest:
            counted += self._logs.read(job_id, block * BLOCK, rest)[0].count(b"\n")
        return counted

    def _whole_blocks(self, job_id: int, blocks: int) -> int:
        with self._lock:
            known = list(self._prefix.get(job_id, [0]))
        while len(known) <= blocks:
            data, _ = self._logs.read(job_id, (len(known) - 1) * BLOCK, BLOCK)
            known.append(known[-1] + data.count(b"\n"))
        with self._lock:
            if len(known) > len(self._prefix.get(job_id, ())):
                self._prefix[job_id] = known
            self._prefix.move_to_end(job_id)
            while len(self._prefix) > self._keep:
                self._prefix.popitem(last=False)
        return known[blocks]
