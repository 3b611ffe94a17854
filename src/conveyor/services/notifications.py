"""Operators' view of the outbox: what was not delivered, and sending it again."""

from collections.abc import Callable, Sequence
from typing import Protocol

from conveyor.domain.errors import InvalidParam, StateConflict, TaskNotFound
from conveyor.domain.outbox import OutboxEntry
from conveyor.domain.principals import Principal
from conveyor.services.auth import Authorizer
from conveyor.services.ports import Clock

STATES = ("waiting", "dropped", "delivered", "superseded")
UNDELIVERED = ("waiting", "dropped")
MAX_LIST = 1000


class OutboxListing(Protocol):
    def listing(
        self, states: Sequence[str], workflows: frozenset[str] | None, limit: int
    ) -> list[OutboxEntry]: ...

    def get(self, msg_id: int) -> OutboxEntry | None: ...

    def send_again(self, msg_id: int, now: int) -> bool: ...

    def newer_of_key(self, entry: OutboxEntry) -> int | None: ...


class NotificationService:
    def __init__(
        self,
        store: OutboxListing,
        authorizer: Authorizer,
        clock: Clock,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._auth = authorizer
        self._clock = clock
        self._wake = wake

    def list(self, principal: Principal, state: str, limit: int) -> list[OutboxEntry]:
        """Notifications in `state` ("undelivered": waiting or dropped), newest first,
        of the workflows whose tasks the caller may view."""
        states = UNDELIVERED if state == "undelivered" else (state,)
        if state != "undelivered" and state not in STATES:
            raise InvalidParam(f"state: {state!r} is not one of undelivered, {', '.join(STATES)}")
        if not 1 <= limit <= MAX_LIST:
            raise InvalidParam(f"limit: must be between 1 and {MAX_LIST}")
        viewable = self._auth.viewable_workflows(principal)
        if viewable is not None and not viewable:
            return []
        return self._store.listing(states, viewable, limit)

    def send_again(self, principal: Principal, msg_id: int) -> OutboxEntry:
        """A dropped or waiting notification sent again now; needs task:restart on its
        task's workflow."""
        found = self._store.get(msg_id)
        if found is None or not self._auth.allows(principal, "task:view", found.workflow_name):
            raise TaskNotFound(f"no notification {msg_id}")
        self._auth.require(principal, "task:restart", found.workflow_name)
        newer = self._store.newer_of_key(found)
        if found.coalesce and newer is not None:
            # Sending it now would put an older state on the commit than GitLab has.
            raise StateConflict(
                f"notification {msg_id} ({found.event}) is older than notification {newer} "
                "of the same commit status; send that one again instead"
            )
        if not self._store.send_again(msg_id, self._clock()):
            raise StateConflict(
                f"notification {msg_id} is {found.state}; "
                "only waiting or dropped ones are sent again"
            )
        self._wake()
        again = self._store.get(msg_id)
        assert again is not None
        return again
