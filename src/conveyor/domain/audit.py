"""An entry of the audit log: who did what, with which token, to which task."""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    action: str
    token_id: int | None = None
    workflow_name: str | None = None
    task_id: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
