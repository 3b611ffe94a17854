"""The lookup by commit on the event loop: the token and the tasks in one round trip.

The API's hot path (docs/adr/0004). The tasks are read beside the token, in the same
round trip: the database returns rows only for a valid (unrevoked, unexpired) token,
and they are returned to the caller only once the token also passes the checks here
(its hash compared in constant time). A token limited to some workflows costs a
second read, filtered to those. A bad commitId or limit is told only to a caller who
authenticates, as on every other route (docs/adr/0002).
"""

from collections.abc import Callable

from conveyor.domain.errors import InvalidParam
from conveyor.domain.views import TaskWithCommits
from conveyor.services.auth import TokenService
from conveyor.services.ports import AsyncLookups, Clock
from conveyor.services.tasks import TaskService


class CommitLookup:
    def __init__(
        self, tokens: TokenService, tasks: TaskService, reads: AsyncLookups, clock: Clock
    ) -> None:
        self._tokens = tokens
        self._tasks = tasks
        self._reads = reads
        self._clock = clock

    async def find(
        self, authorization: str | None, commit_id: str, limit_of: Callable[[], int]
    ) -> list[TaskWithCommits]:
        """`limit_of` reads the limit from the request: its errors, like the commit id's,
        come after authentication."""
        digest = self._tokens.digest_of(authorization)
        try:
            limit = limit_of()
            prefix = self._tasks.lookup_prefix(commit_id, limit)
        except InvalidParam:
            self._tokens.principal_of(await self._reads.token(digest), digest)
            raise
        found, tasks = await self._reads.token_and_tasks(digest, prefix, limit, self._clock())
        viewable = self._tasks.viewable(self._tokens.principal_of(found, digest))
        if viewable is None:
            return tasks
        if not viewable:
            return []
        return await self._reads.tasks(prefix, viewable, limit)
