"""How `serve` and `worker` write their logs: text for a person, or JSON (one object a
line) for a log pipeline, with the task, job and request a line is about as fields."""

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
# The request being answered in this context (set by the API's request-id middleware).
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Fields a log call may pass with `extra=`: they become JSON fields (the text format has
# them in its message already).
FIELDS = ("workflow", "task", "job", "stage", "service", "state", "from_state")


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*FIELDS, "request_id"):
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the process's own stderr (`sys.__stderr__`), whatever stands in for
    `sys.stderr` later: celery's worker replaces it with a proxy that logs what is
    written (a loop that drops lines), a test runner with a buffer it closes."""

    def __init__(self) -> None:
        super().__init__(sys.__stderr__)


def configure(fmt: LogFormat) -> None:
    handler = _Stderr()
    handler.addFilter(_WithRequestId())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(old)  # configured again (a test, say): one handler, not two
    root.addHandler(handler)
    root.setLevel(logging.INFO)
