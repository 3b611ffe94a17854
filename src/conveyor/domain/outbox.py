"""A notification in the outbox, as the sender and the operators see it."""

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    channel: str
    key: str
    coalesce: bool
    url: str
    event: str
    delivery_id: str
    body: str
    workflow_name: str
    task_id: int
    state: str
    attempts: int
    create_time: int
    next_time: int
    end_time: int | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    text: str


class NoAnswer(Exception):
    """The request got no HTTP answer (refused, reset, timed out): worth retrying."""


class Undeliverable(Exception):
    """The message cannot be sent as configured now (its URL is no longer configured)."""
