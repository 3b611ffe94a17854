"""The workflow-task use cases: create, lookup by commit, cancel, restart."""

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from conveyor.domain.audit import AuditEntry
from conveyor.domain.errors import InvalidParam, StateConflict, TaskNotFound
from conveyor.domain.masking import SecretPatterns, mask_window
from conveyor.domain.principals import Principal
from conveyor.domain.refs import (
    MAX_BRANCH,
    MAX_PR,
    branch_name_problem,
    is_commit_prefix,
    is_full_commit,
)
from conveyor.domain.states import (
    RESTARTABLE_TASK_STATES,
    TERMINAL_JOB_STATES,
    JobState,
    PublicStatus,
    TaskState,
    public_status,
)
from conveyor.domain.tasks import RepoRequest, ResolvedRepo, StepSpec, TargetSpec, Task, TaskSpec
from conveyor.domain.variables import variable_value_problem
from conveyor.domain.views import JobView, TaskDetail, TaskWithCommits, WorkflowSummary
from conveyor.services.auth import Authorizer
from conveyor.services.log_lines import LineCounts
from conveyor.services.ports import (
    Clock,
    LogStore,
    NoTaskEvents,
    RefResolver,
    TaskEvents,
    TaskStore,
    TaskWriter,
)
from conveyor.settings import Config, WorkflowConfig

MAX_LOOKUP_LIMIT = 1000
MAX_LIST = 200
LOG_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogPiece:
    job: JobView
    data: bytes
    next_offset: int
    """Where to read from next: before the log's end while its last bytes could still
    become a secret."""
    size: int
    start: int = 0
    """The offset of `data`'s first byte."""
    first_line: int | None = None
    """The line number (from 1) `data` starts at, where it was counted."""


@dataclass(frozen=True, slots=True)
class TargetRequest:
    name: str
    repos: tuple[RepoRequest, ...]
    envs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CreateRequest:
    workflow_name: str
    env_name: str
    targets: tuple[TargetRequest, ...]


def _check_branch(where: str, branch: str) -> None:
    if len(branch) > MAX_BRANCH:
        raise InvalidParam(f"{where}: longer than {MAX_BRANCH} characters")
    problem = branch_name_problem(branch)
    if problem:
        raise InvalidParam(f"{where}: {branch!r} {problem}")


def _commit_prefix(where: str, value: str) -> str:
    """`value` as a commit id or prefix to look up (lower case), or a 400 naming it."""
    if not is_commit_prefix(value):
        raise InvalidParam(
            f"{where}: must be a full commit id or a prefix of at least 8 hex digits"
        )
    return value.lower()


@dataclass(frozen=True, slots=True)
class HookTask:
    """A task a hook asks for, planned: `trigger_key` names its branch or merge request
    for auto_cancel; `detail` goes to the audit log."""

    spec: TaskSpec
    trigger_key: str | None
    detail: dict[str, object]
    supersedes: bool = False
    """Its commit is the head of its branch or merge request now: it may auto-cancel."""


@dataclass(frozen=True, slots=True)
class _PlannedRepo:
    """A repo of a target before its refs are resolved; `where` names it for errors."""

    where: str
    request: RepoRequest
    url: str

    @property
    def pinned(self) -> bool:
        """A branch at a commit a hook gave: nothing to read from the remote for it."""
        return self.request.commit is not None and self.request.pr == 0

    @property
    def refs(self) -> list[str]:
        """What must be read from the remote: nothing for a pinned push; the branch to
        merge onto for a pinned merge request."""
        req = self.request
        if self.pinned:
            return []
        refs = [f"refs/heads/{req.branch}"]
        if req.pr > 0 and req.commit is None:
            refs.append(f"refs/merge-requests/{req.pr}/head")
        return refs


class TaskService:
    def __init__(
        self,
        config: Config,
        store: TaskStore,
        resolver: RefResolver,
        authorizer: Authorizer,
        clock: Clock,
        on_change: Callable[[int | None], None] = lambda task_pk: None,
        logs: LogStore | None = None,
        events: TaskEvents | None = None,
    ) -> None:
        self._events = events or NoTaskEvents()
        self._logs = logs
        self._lines = LineCounts(logs) if logs is not None else None
        self._secrets = SecretPatterns(config.secret_values())
        self._on_change = on_change
        self._config = config
        self._store = store
        self._resolver = resolver
        self._auth = authorizer
        self._clock = clock

    # -- create ---------------------------------------------------------------------

    def create(self, principal: Principal, request: CreateRequest) -> Task:
        self._auth.require(principal, "task:create", request.workflow_name)
        spec = self.plan(request)
        with self._store.write() as tx:
            task = self._add(tx, principal, spec)
        self._events.task_created(task.workflow_name)
        self._on_change(task.pk)
        return task

    def plan(self, request: CreateRequest) -> TaskSpec:
        """The task `request` asks for, checked and pinned to commits; nothing stored."""
        workflow = self._workflow(request.workflow_name, "workflow_name")
        if not request.targets:
            raise InvalidParam("targets: give at least one target")
        if request.env_name not in workflow.allowed_envs:
            raise InvalidParam(
                f"env_name: workflow {request.workflow_name!r} cannot deploy to env "
                f"{request.env_name!r}; allowed: {sorted(workflow.allowed_envs)}"
            )
        seen: set[str] = set()
        for i, target in enumerate(request.targets):
            if target.name in seen:
                raise InvalidParam(f"targets[{i}].name: service {target.name!r} given twice")
            seen.add(target.name)
        planned = [self._plan_target(i, t, workflow) for i, t in enumerate(request.targets)]
        commits = self._resolve([repo for _, repos in planned for repo in repos])
        return TaskSpec(
            workflow_name=request.workflow_name,
            env_name=request.env_name,
            env_vars=tuple(sorted(self._config.envs[request.env_name].vars.items())),
            targets=tuple(self._target_spec(target, repos, commits) for target, repos in planned),
        )

    def _add(
        self,
        tx: TaskWriter,
        principal: Principal,
        spec: TaskSpec,
        trigger_key: str | None = None,
        task_id: int | None = None,
        **detail: object,
    ) -> Task:
        if task_id is None:
            task_id = tx.next_task_id(spec.workflow_name)
        # Read the clock only now, holding the workflow's counter: ids and creation
        # times then agree, whatever order concurrent requests arrived in.
        now = self._clock()
        task = tx.add_task(
            task_id=task_id,
            spec=spec,
            created_by=principal.user,
            create_time=now,
            trigger_key=trigger_key,
        )
        tx.audit(
            AuditEntry(
                actor=principal.user,
                action="task.create",
                token_id=principal.token_id,
                workflow_name=task.workflow_name,
                task_id=task.task_id,
                detail={
                    "env_name": spec.env_name,
                    "targets": [t.service for t in spec.targets],
                    **detail,
                },
            ),
            now,
        )
        return task

    def create_for_hook(
        self, principal: Principal, delivery: str | None, planned: Sequence[HookTask]
    ) -> list[Task] | None:
        """Store the tasks a hook delivery asks for, all or none, with the delivery's id:
        None if that delivery was stored before (a redelivery creates nothing). The
        hook's secret authorised it; `planned` went through `plan()` like any create.
        A task that `supersedes`, in a workflow with auto_cancel, first cancels the
        tasks hooks started before this delivery for the same branch or merge request
        (first: their `canceled` statuses then come before the new task's `pending`)."""
        with self._store.write() as tx:
            if delivery is not None and not tx.claim_delivery(delivery, self._clock()):
                return None
            # Ids first, so a cancelled task's audit names the task that superseded it.
            ids = [tx.next_task_id(t.spec.workflow_name) for t in planned]
            cancelled: set[int] = set()
            ended: list[Task] = []
            for hook_task, new_id in zip(planned, ids, strict=True):
                spec, key = hook_task.spec, hook_task.trigger_key
                if key is None or not hook_task.supersedes:
                    continue
                if not self._config.workflows[spec.workflow_name].auto_cancel:
                    continue
                for older in tx.active_tasks_with_trigger(spec.workflow_name, key):
                    if older.pk not in cancelled:
                        cancelled.add(older.pk)
                        ended.append(
                            self._cancel_in(
                                tx, principal, older, reason="auto_cancel", superseded_by=new_id
                            )
                        )
            created = [
                self._add(tx, principal, t.spec, t.trigger_key, task_id, **t.detail)
                for t, task_id in zip(planned, ids, strict=True)
            ]
            if delivery is not None:
                tx.record_delivery(delivery, [(t.workflow_name, t.task_id) for t in created])
        for task in created:
            self._events.task_created(task.workflow_name)
        for task in ended:
            self._cancelled_before_start(task)
        self._on_change(None)
        return created

    def is_head(self, repo_name: str, ref: str, commit: str) -> bool:
        """Whether `ref` of the repo points at `commit` now (a hook may arrive late)."""
        url = self._config.repos[repo_name].url
        return self._resolver.resolve(url, [ref]).get(ref) == commit

    def delivered_tasks(self, delivery: str) -> list[tuple[str, int]]:
        """The tasks a hook delivery created, when it was received before."""
        return self._store.delivery_tasks(delivery) or []

    def _workflow(self, name: str, where: str) -> WorkflowConfig:
        workflow = self._config.workflows.get(name)
        if workflow is None:
            raise InvalidParam(f"{where}: unknown workflow {name!r}")
        return workflow

    def _plan_target(
        self, index: int, target: TargetRequest, workflow: WorkflowConfig
    ) -> tuple[TargetRequest, list[_PlannedRepo]]:
        where = f"targets[{index}]"
        if target.name not in workflow.services:
            raise InvalidParam(
                f"{where}.name: service {target.name!r} is not part of this workflow; "
                f"its services: {workflow.services}"
            )
        service = self._config.services[target.name]
        self._check_variables(where, target)
        asked: dict[str, _PlannedRepo] = {}
        for j, repo in enumerate(target.repos):
            rwhere = f"{where}.build.repos[{j}]"
            if repo.pr < 0:
                raise InvalidParam(f"{rwhere}.pr: must be 0 or a merge request number")
            if repo.repo_name not in service.build.repos:
                raise InvalidParam(
                    f"{rwhere}.repo_name: repo {repo.repo_name!r} is not built by service "
                    f"{target.name!r}; its repos: {service.build.repos}"
                )
            if repo.repo_name in asked:
                raise InvalidParam(f"{rwhere}.repo_name: repo {repo.repo_name!r} given twice")
            # The API's schema holds its requests to these bounds; a hook's come here.
            if repo.pr > MAX_PR:
                raise InvalidParam(f"{rwhere}.pr: must be at most {MAX_PR}")
            _check_branch(f"{rwhere}.branch", repo.branch)
            if repo.commit is not None and not is_full_commit(repo.commit):
                raise InvalidParam(f"{rwhere}.commit: {repo.commit!r} is not a full commit id")
            url = self._config.repos[repo.repo_name].url
            asked[repo.repo_name] = _PlannedRepo(rwhere, repo, url)
        planned = []
        for name in service.build.repos:
            if name in asked:
                planned.append(asked[name])
            else:
                repo_cfg = self._config.repos[name]
                default = RepoRequest(repo_name=name, branch=repo_cfg.default_branch)
                planned.append(_PlannedRepo(f"repos.{name}.default_branch", default, repo_cfg.url))
        return target, planned

    def _check_variables(self, where: str, target: TargetRequest) -> None:
        """Request values may set only the variables the service's build declares."""
        declared = self._config.services[target.name].build.variables
        seen: set[str] = set()
        for k, (key, value) in enumerate(target.envs):
            if key not in declared:
                shown = f"it declares {sorted(declared)}" if declared else "it declares none"
                raise InvalidParam(
                    f"{where}.envs[{k}].key: {key!r} is not a build variable of service "
                    f"{target.name!r} ({shown} in services.{target.name}.build.variables)"
                )
            if key in seen:
                raise InvalidParam(f"{where}.envs[{k}].key: {key!r} given twice")
            seen.add(key)
            problem = variable_value_problem(value)
            if problem:
                raise InvalidParam(f"{where}.envs[{k}].value: {problem}")

    def _resolve(self, repos: Sequence[_PlannedRepo]) -> dict[tuple[str, str], str]:
        """(url, ref) -> commit for every ref the repos need, one ls-remote per url."""
        wanted: dict[str, set[str]] = {}
        for repo in repos:
            if repo.refs:
                wanted.setdefault(repo.url, set()).update(repo.refs)
        if not wanted:
            return {}

        def resolve(url: str) -> dict[str, str]:
            return self._resolver.resolve(url, sorted(wanted[url]))

        if len(wanted) == 1:  # the usual case: no thread to start for it
            answers: Iterable[dict[str, str]] = [resolve(next(iter(wanted)))]
        else:
            with ThreadPoolExecutor(max_workers=min(8, len(wanted))) as pool:
                answers = list(pool.map(resolve, wanted))
        found = {
            (url, ref): sha
            for url, refs in zip(wanted, answers, strict=True)
            for ref, sha in refs.items()
        }
        for repo in repos:
            req = repo.request
            if repo.pinned:
                continue
            if (repo.url, f"refs/heads/{req.branch}") not in found:
                raise InvalidParam(
                    f"{repo.where}: branch {req.branch!r} not found in repo {req.repo_name!r}"
                )
            mr_ref = f"refs/merge-requests/{req.pr}/head"
            if req.pr > 0 and req.commit is None and (repo.url, mr_ref) not in found:
                raise InvalidParam(
                    f"{repo.where}.pr: merge request {req.pr} not found in repo {req.repo_name!r}"
                )
        return found

    def _target_spec(
        self,
        target: TargetRequest,
        repos: Sequence[_PlannedRepo],
        commits: dict[tuple[str, str], str],
    ) -> TargetSpec:
        service = self._config.services[target.name]
        resolved = []
        for repo in repos:
            req = repo.request
            if repo.pinned:
                assert req.commit is not None
                resolved.append(ResolvedRepo(req.repo_name, repo.url, req.branch, 0, req.commit))
                continue
            branch_head = commits[(repo.url, f"refs/heads/{req.branch}")]
            if req.pr > 0:
                mr_head = req.commit or commits[(repo.url, f"refs/merge-requests/{req.pr}/head")]
                resolved.append(
                    ResolvedRepo(req.repo_name, repo.url, req.branch, req.pr, mr_head, branch_head)
                )
            else:
                resolved.append(ResolvedRepo(req.repo_name, repo.url, req.branch, 0, branch_head))
        return TargetSpec(
            service=target.name,
            repos=tuple(resolved),
            build=StepSpec(
                service.build.script,
                service.build.timeout,
                service.build.queue,
                tuple(service.build.outputs),
            ),
            deploy=StepSpec(
                service.deploy.script,
                service.deploy.timeout,
                service.deploy.queue,
                checkout=service.deploy.checkout,
            ),
            # Captured whole, defaults included, so a restart sets the same values.
            envs=tuple({**service.build.variables, **dict(target.envs)}.items()),
        )

    # -- lookup ---------------------------------------------------------------------

    def find_by_commit(
        self, principal: Principal, commit_id: str, limit: int = 100
    ) -> list[TaskWithCommits]:
        commit_id = self.lookup_prefix(commit_id, limit)
        viewable = self.viewable(principal)
        if viewable is not None and not viewable:
            return []
        return self._store.find_by_commit(commit_id, viewable, limit)

    @staticmethod
    def lookup_prefix(commit_id: str, limit: int) -> str:
        """The commit id or prefix a lookup asks for, checked with its limit."""
        commit_id = _commit_prefix("commitId", commit_id)
        if not 1 <= limit <= MAX_LOOKUP_LIMIT:
            raise InvalidParam(f"limit: must be between 1 and {MAX_LOOKUP_LIMIT}")
        return commit_id

    def viewable(self, principal: Principal) -> frozenset[str] | None:
        """The workflows whose tasks the caller may view; None: every one."""
        return self._auth.viewable_workflows(principal)

    # -- lists ----------------------------------------------------------------------

    def workflows(self, principal: Principal) -> list[WorkflowSummary]:
        """Every configured workflow the caller may view, by name, with its newest task."""
        viewable = self._auth.viewable_workflows(principal)
        names = sorted(n for n in self._config.workflows if viewable is None or n in viewable)
        return self._store.workflow_summaries(names) if names else []

    def workflow(self, principal: Principal, name: str) -> WorkflowConfig:
        """A workflow's config, for a caller who may view its tasks."""
        self._auth.require(principal, "task:view", name)
        return self._workflow(name, "name")

    def may(self, principal: Principal, permission: str, workflow_name: str) -> bool:
        """Whether the caller holds `permission` on the workflow: a page shows only the
        buttons that would work."""
        return self._auth.allows(principal, permission, workflow_name)

    def tasks_of(
        self,
        principal: Principal,
        workflow_name: str,
        *,
        limit: int = 50,
        before: int | None = None,
        status: str | None = None,
        branch: str | None = None,
        commit: str | None = None,
    ) -> list[TaskWithCommits]:
        """A workflow's tasks, newest first; `before` (a task id) pages on; filtered by
        public status, by a branch a task built, by a commit (or 8+ hex prefix)."""
        self._auth.require(principal, "task:view", workflow_name)
        self._workflow(workflow_name, "name")
        if not 1 <= limit <= MAX_LIST:
            raise InvalidParam(f"limit: must be between 1 and {MAX_LIST}")
        states = None
        if status is not None:
            states = [s for s in TaskState if public_status(s).value == status]
            if not states:
                words = ", ".join(p.value for p in PublicStatus)
                raise InvalidParam(f"status: {status!r} is not one of {words}")
        if branch is not None:
            _check_branch("branch", branch)
        if commit is not None:
            commit = _commit_prefix("commit", commit)
        return self._store.list_tasks(workflow_name, limit, before, states, branch, commit)

    # -- detail and logs ------------------------------------------------------------

    def detail(self, principal: Principal, workflow_name: str, task_id: int) -> TaskDetail:
        self.check_detail(principal, workflow_name)
        return self.detail_found(self._store.detail(workflow_name, task_id), workflow_name, task_id)

    def check_detail(self, principal: Principal, workflow_name: str) -> None:
        """What `detail` checks before it reads: the permission, and the workflow."""
        self._auth.require(principal, "task:view", workflow_name)
        self._workflow(workflow_name, "name")

    @staticmethod
    def detail_found(found: TaskDetail | None, workflow_name: str, task_id: int) -> TaskDetail:
        if found is None:
            raise TaskNotFound(f"no task {task_id} in workflow {workflow_name!r}")
        return found

    def job_log(
        self,
        principal: Principal,
        workflow_name: str,
        task_id: int,
        job_id: int,
        offset: int,
        limit: int = LOG_CHUNK,
    ) -> LogPiece:
        """The job and up to `limit` bytes of its log from `offset`, masked again with
        the secrets known now (a log written before a secret was added, or by a worker
        whose config lacked it, is masked all the same)."""
        job = self._job(principal, workflow_name, task_id, job_id)
        if self._logs is None:
            return LogPiece(job, b"", 0, 0)
        # The masker needs the bytes around the window to judge the ones at its edges.
        context = self._secrets.longest
        start = max(0, offset - context)
        ext, size = self._logs.read(job_id, start, offset - start + limit + context)
        return self._masked(job, ext, start, min(offset, size), min(offset + limit, size), size)

    def job_log_before(
        self,
        principal: Principal,
        workflow_name: str,
        task_id: int,
        job_id: int,
        before: int | None,
        limit: int = LOG_CHUNK,
    ) -> LogPiece:
        """Up to `limit` bytes of a job's log that end at `before` (None: the log's end,
        so a page shows a long log's tail first) and start at a line's start (inside a
        line longer than the piece), with the number of that line: a page reads a log
        backwards a piece at a time."""
        job = self._job(principal, workflow_name, task_id, job_id)
        if self._logs is None or self._lines is None:
            return LogPiece(job, b"", 0, 0, 0, 1)
        _, size = self._logs.read(job_id, 0, 0)
        end = size if before is None else min(before, size)
        lo = max(0, end - limit)
        # One read holds the piece and the bytes the masker needs around it.
        context = self._secrets.longest
        ext_start = max(0, lo - context)
        ext, size = self._logs.read(job_id, ext_start, end - ext_start + context)
        if lo > 0:
            window = ext[lo - ext_start : end - ext_start]
            newline = window.find(b"\n")
            # A line longer than the piece (a progress bar's): start inside it, at a
            # character's first byte, rather than serve nothing.
            whole_line = 0 <= newline < len(window) - 1
            lo += newline + 1 if whole_line else _utf8_start(window)
        lines = 1 + self._lines.before(job_id, lo)
        return self._masked(job, ext, ext_start, lo, min(end, size), size, lines)

    def _job(self, principal: Principal, workflow_name: str, task_id: int, job_id: int) -> JobView:
        found = self.detail(principal, workflow_name, task_id)
        job = next((j for j in found.jobs if j.id == job_id), None)
        if job is None:
            raise TaskNotFound(f"task {workflow_name}#{task_id} has no job {job_id}")
        return job

    def _masked(
        self,
        job: JobView,
        ext: bytes,
        ext_start: int,
        lo: int,
        hi: int,
        size: int,
        first_line: int | None = None,
    ) -> LogPiece:
        """Bytes [lo, hi) of the stored log, masked; `ext` holds them and their context."""
        complete = JobState(job.state) in TERMINAL_JOB_STATES
        data, next_offset = mask_window(self._secrets, ext, ext_start, lo, hi, complete)
        return LogPiece(job, data, next_offset, size, lo, first_line)

    # -- cancel / restart -----------------------------------------------------------

    def cancel(self, principal: Principal, workflow_name: str, task_id: int) -> Task:
        self._auth.require(principal, "task:cancel", workflow_name)
        self._workflow(workflow_name, "name")
        with self._store.write() as tx:
            task = self._get(tx.get_task(workflow_name, task_id), workflow_name, task_id)
            if task.state in (TaskState.CANCELLED, TaskState.CANCELLING):
                return task
            if task.state not in (TaskState.QUEUED, TaskState.RUNNING):
                raise StateConflict(
                    f"task {workflow_name}#{task_id} is {public_status(task.state)}; "
                    "only created or running tasks can be cancelled"
                )
            new = self._cancel_in(tx, principal, task)
        self._cancelled_before_start(new)
        self._on_change(None)
        return new

    def _cancelled_before_start(self, task: Task) -> None:
        # A running task ends when its jobs stop, as the scheduler sees; a queued one here.
        if task.state is TaskState.CANCELLED:
            self._events.task_finished(task.workflow_name, task.task_id, "cancelled", None)

    def _cancel_in(
        self, tx: TaskWriter, principal: Principal, task: Task, **detail: object
    ) -> Task:
        """Cancel a created or running `task` inside `tx`, audited."""
        now = self._clock()
        if task.state is TaskState.QUEUED:
            new = tx.move_task(task, TaskState.CANCELLED, now)
            tx.cancel_pending_jobs(task, now)
        else:
            # Durable now: runners see the flag and stop the task's processes.
            new = tx.move_task(task, TaskState.CANCELLING, now)
        tx.audit(self._entry(principal, "task.cancel", task, **detail), now)
        return new

    def restart(self, principal: Principal, workflow_name: str, task_id: int) -> Task:
        self._auth.require(principal, "task:restart", workflow_name)
        self._workflow(workflow_name, "name")
        with self._store.write() as tx:
            task = self._get(tx.get_task(workflow_name, task_id), workflow_name, task_id)
            if task.state not in RESTARTABLE_TASK_STATES:
                raise StateConflict(
                    f"task {workflow_name}#{task_id} is {public_status(task.state)}; "
                    "only failed, timeout or cancelled tasks can be restarted"
                )
            now = self._clock()
            new = tx.move_task(task, TaskState.QUEUED, now, attempt=task.attempt + 1)
            tx.add_attempt(new, principal.user, now)
            rerun = tx.add_jobs_to_rerun(new)
            tx.audit(
                self._entry(principal, "task.restart", task, attempt=new.attempt, jobs=rerun), now
            )
        if task.state is TaskState.CANCELLING:
            # Restarted while still stopping: its attempt ended cancelled here, not in the
            # scheduler, which will never see it end.
            self._events.task_finished(task.workflow_name, task.task_id, "cancelled", None)
        self._on_change(None)
        return new

    @staticmethod
    def _get(task: Task | None, workflow_name: str, task_id: int) -> Task:
        if task is None:
            raise TaskNotFound(f"no task {task_id} in workflow {workflow_name!r}")
        return task

    @staticmethod
    def _entry(principal: Principal, action: str, task: Task, **detail: object) -> AuditEntry:
        return AuditEntry(
            actor=principal.user,
            action=action,
            token_id=principal.token_id,
            workflow_name=task.workflow_name,
            task_id=task.task_id,
            detail={"from_state": task.state.value, **detail},
        )


def _utf8_start(data: bytes) -> int:
    """How many bytes at `data`'s start continue a character that began before it."""
    skip = 0
    while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
        skip += 1
    return skip
