"""A task's detail on the event loop: the route every client waiting on a task polls.

On PostgreSQL, as the lookup by commit (commit_lookup.py, docs/adr/0004): the token and
then the task's four reads go over an asyncio connection, with no hand-off to a thread
and back. The checks are `TaskService.detail`'s, in the same order.
"""

from conveyor.domain.principals import Principal
from conveyor.domain.views import TaskDetail
from conveyor.services.auth import TokenService
from conveyor.services.ports import AsyncLookups
from conveyor.services.tasks import TaskService


class StatusReads:
    def __init__(self, tokens: TokenService, tasks: TaskService, reads: AsyncLookups) -> None:
        self._tokens = tokens
        self._tasks = tasks
        self._reads = reads

    async def principal(self, authorization: str) -> Principal:
        """Who the Authorization header's token is (TokenService.authenticate)."""
        digest = self._tokens.digest_of(authorization)
        return self._tokens.principal_of(await self._reads.token(digest), digest)

    async def detail(self, principal: Principal, workflow_name: str, task_id: int) -> TaskDetail:
        """TaskService.detail."""
        self._tasks.check_detail(principal, workflow_name)
        found = await self._reads.task_detail(workflow_name, task_id)
        return self._tasks.detail_found(found, workflow_name, task_id)
