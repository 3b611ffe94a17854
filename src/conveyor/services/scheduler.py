"""The scheduler: decides what runs next and what a task's state is.

It reads the database (the truth), starts queued tasks first-in first-out within the
caps, dispatches each stage's jobs to the executor, and turns the jobs' reported
outcomes into the task's state. Executors only report. One `tick()` does one pass;
`run()` repeats it whenever `wake()` is called, and on a short poll as a safety net.
A wake that names a task (its job ended, it was created) advances only that task and
starts what the free slots allow; every other pass, and at least one every `poll_s`,
goes over every active task.
"""

import contextlib
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from conveyor.domain.durations import format_duration
from conveyor.domain.jobs import JobRow, JobSpec
from conveyor.domain.outcome import task_outcome
from conveyor.domain.states import TERMINAL_JOB_STATES, JobState, TaskState, public_status
from conveyor.domain.tasks import StepSpec, TargetSpec, Task, TaskSpec
from conveyor.services.ports import (
    Clock,
    Executor,
    JobMoves,
    JobStore,
    JobTransaction,
    NoTaskEvents,
    TaskEvents,
)
from conveyor.settings import Config

log = logging.getLogger("conveyor.scheduler")

POLL_S = 1.0
REAP_EVERY_S = 5
QUEUED_BATCH = 50
SUBMIT_BACKOFF_MAX_S = 60.0
RESEND_AFTER_S = 300
SPECS_KEPT = 1024


class Scheduler:
    def __init__(
        self,
        config: Config,
        store: JobStore,
        executor: Executor,
        clock: Clock,
        poll_s: float = POLL_S,
        monotonic: Callable[[], float] = time.monotonic,
        events: TaskEvents | None = None,
    ) -> None:
        self._events = events or NoTaskEvents()
        self._poll_s = poll_s
        self._monotonic = monotonic
        self._resubmit_first = False
        self._config = config
        self._store = store
        self._executor = executor
        self._clock = clock
        self._wake = threading.Event()
        self._woken_lock = threading.Lock()
        self._woken: set[int] = set()  # tasks named by wakes since the last pass
        self._woken_all = False
        self._next_full = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_reap = 0
        # Jobs whose submit failed: job id -> (when to try again, monotonic; the delay).
        self._backoff: dict[int, tuple[float, float]] = {}
        # Jobs sent again since no worker took them: job id -> when (unix seconds).
        self._resent: dict[int, int] = {}
        # Tasks a thread is advancing -> whether another asked meanwhile (see _advance_alone).
        self._advancing: dict[int, bool] = {}
        self._advancing_lock = threading.Lock()
        # Specs of the tasks started lately, by (workflow, task id): a task's spec never
        # changes once stored, and its start and its deploys each need it.
        self._specs: OrderedDict[tuple[str, int], TaskSpec] = OrderedDict()
        self._specs_lock = threading.Lock()

    # -- the loop ----------------------------------------------------------------------

    def wake(self, task_pk: int | None = None) -> None:
        """Schedule again: for `task_pk` only (one of its jobs ended, or it is new), or
        for every task."""
        with self._woken_lock:
            if task_pk is None:
                self._woken_all = True
            else:
                self._woken.add(task_pk)
        self._wake.set()

    def job_ended(self, task_pk: int) -> None:
        """A job of `task_pk` ended (in this process, or on a worker that said so through
        the database): advance the task now, on the caller's thread, instead of after a
        hop to the scheduler's (which would queue it behind every other wake). Each move
        is conditional, so a pass of the scheduler's own advancing the same task at the
        same time starts nothing twice; a task that ends here wakes the scheduler to fill
        the slot it frees. Never raises: on a fault the scheduler's thread advances the
        task instead."""
        if self._stop.is_set():
            return  # shutting down: the next server advances it, as it would any task
        try:
            now = self._clock()
            active = self._store.tasks_among({task_pk}, TaskState.RUNNING, TaskState.CANCELLING)
            if active and not self._advance_alone(active[0], now):
                return
        except Exception:
            log.exception("task %s: advancing it after its job failed; retrying", task_pk)
            self.wake(task_pk)
            return
        self._wake.set()  # no task named: the pass starts what the freed slot allows

    def job_ended_in(self, tx: JobTransaction, task_pk: int) -> None:
        """A job of `task_pk` ended in `tx`, not yet committed: take the task's next step
        (queue its deploys, or end it) in that same transaction, one fewer for each, and
        hand what it queued to the executor once committed. A task another thread is
        advancing is left to job_ended after the commit, when the result can be seen.
        Never raises for a fault of the step: the step alone is undone, the result is
        kept, and the scheduler's thread advances the task."""
        self._step_in(tx, task_pk, keep_the_rest=True)

    def _step_in(self, tx: JobTransaction, task_pk: int, keep_the_rest: bool) -> None:
        """The task's next step in `tx`. With `keep_the_rest`, a fault of the step undoes
        the step alone and is logged; without, it raises, for the whole transaction to
        be rolled back."""
        if self._stop.is_set():
            return  # shutting down: the next server advances it, as it would any task
        with self._advancing_lock:
            if task_pk in self._advancing:
                tx.after_commit(lambda: self.job_ended(task_pk))
                return
            self._advancing[task_pk] = False
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            with self._advancing_lock:
                asked = self._advancing.pop(task_pk, False)
            if asked:  # another thread left the task to this one meanwhile
                self.job_ended(task_pk)

        # Held until the transaction has committed (before what the step sends: a job
        # sent must not find its task still marked) or rolled back. A thread that read
        # the task before would not see this job's end, nor a sibling's whose result
        # commits meanwhile.
        tx.after_end(release)  # first: it cannot fail, and a rollback must release too
        tx.after_commit(release)
        try:
            with tx.undone_on_error() if keep_the_rest else contextlib.nullcontext():
                task = tx.task(task_pk)
                if task is None or task.state not in (TaskState.RUNNING, TaskState.CANCELLING):
                    # Restarted meanwhile, say: a pass starts it once its jobs are gone.
                    tx.after_commit(self._wake.set)
                elif self._advance(task, self._clock(), tx):
                    tx.after_commit(self._wake.set)  # fill the slot it freed
        except Exception:
            if not keep_the_rest:
                raise
            log.exception("task %s: advancing it with its job's result failed; retrying", task_pk)
            tx.after_commit(lambda: self.wake(task_pk))

    def job_ended_again(self, task_pk: int) -> None:
        """A job's result was found recorded already: a first try committed without
        hearing so (its connection dropped on COMMIT), or the job was ended meanwhile.
        What that first try's step queued was never sent: send the task's queued jobs
        again (a runner claims a job once), then go on as job_ended. Never raises."""
        if self._stop.is_set():
            return
        try:
            now = self._clock()
            for task in self._store.tasks_among({task_pk}, TaskState.RUNNING):
                self._resend_queued(task, now)
        except Exception:  # the database is away again: a restart sends them
            log.exception("task %s: sending its queued jobs again failed", task_pk)
        self.job_ended(task_pk)

    def job_ended_elsewhere(self, task_pk: int | None) -> None:
        """A runner in another process ended a job of `task_pk`; None: of some task, or
        several, unknown which."""
        if task_pk is None:
            self.wake()
            return
        with self._advancing_lock:
            if task_pk in self._advancing:  # that thread reads it again once done
                self._advancing[task_pk] = True
                return
        # Its result is committed already: the step reads the task and its jobs and
        # moves them in one transaction, as a local runner's result does in its own.
        try:
            self._store.in_transaction(lambda tx: self._step_in(tx, task_pk, False))
        except Exception:
            log.exception("task %s: advancing it after its job ended failed; retrying", task_pk)
            self.wake(task_pk)

    def start(self, resubmit_queued: bool = False) -> None:
        """Schedule from a thread of its own; first, with `resubmit_queued`, hand the
        executor again every queued job no runner has claimed (see resubmit_queued)."""
        self._resubmit_first = resubmit_queued
        self._thread = threading.Thread(target=self.run, name="conveyor-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run(self) -> None:
        if self._resubmit_first:
            try:
                self.resubmit_queued()
            except Exception:  # the jobs stay queued; queue_timeout ends them at worst
                log.exception("could not hand queued jobs to the executor again")
        while not self._stop.is_set():
            self._wake.wait(self._poll_s)
            self._wake.clear()
            with self._woken_lock:
                woken: set[int] | None = self._woken
                everything = self._woken_all
                self._woken, self._woken_all = set(), False
            if everything or self._monotonic() >= self._next_full:
                woken = None
            try:
                self.tick(woken)
            except Exception:  # one bad pass must not stop scheduling for good
                log.exception("scheduler pass failed; retrying")
                with self._woken_lock:
                    self._woken_all = True

    # -- one pass ----------------------------------------------------------------------

    def tick(self, only: set[int] | None = None) -> None:
        """One pass: over every active task, or `only` these (task pks)."""
        now = self._clock()
        if now >= self._next_reap:
            self.reap_lost_jobs(now)
            self.fail_untaken_jobs(now)
            self.resend_untaken_jobs(now)
            self._next_reap = now + REAP_EVERY_S
            only = None  # a reaped job's task must be advanced too
        if only is None:
            self._next_full = self._monotonic() + self._poll_s
            active = self._store.tasks_in(TaskState.RUNNING, TaskState.CANCELLING)
        else:
            active = self._store.tasks_among(only, TaskState.RUNNING, TaskState.CANCELLING)
        for task in active:
            self._isolated(task, self._advance_alone, task, now)
        self._start_queued(now)

    def _isolated(self, task: Task, step: Callable[..., object], *args: object) -> object:
        """One task's step: a fault there is logged with the task and the others go on
        (the step's result; None after a fault)."""
        try:
            return step(*args)
        except Exception:
            log.exception("%s#%s: scheduling it failed; retrying", task.workflow_name, task.task_id)
            return None

    def reap_lost_jobs(self, now: int) -> None:
        """Fail running jobs whose runner has been silent for `heartbeat_timeout`."""
        for job in self._store.stale_jobs(now - self._config.heartbeat_timeout):
            if self._store.move_job(job, JobState.FAILED, now, "worker lost: no heartbeat"):
                log.warning("job %s lost its runner; failed", job.id)

    def fail_untaken_jobs(self, now: int) -> None:
        """Fail jobs sent to workers that none took within `queue_timeout` (celery: the
        local executor always takes its jobs, in turn)."""
        if self._config.executor != "celery":
            return
        limit = self._config.queue_timeout
        for job in self._store.jobs_queued_before(now - limit):
            step = self._step(job)
            queue = (step.queue if step else None) or self._config.queue
            why = f"no worker took the job from queue {queue} in {format_duration(limit)}"
            if self._store.move_job(job, JobState.FAILED, now, why):
                log.warning("job %s: %s", job.id, why)

    def resend_untaken_jobs(self, now: int) -> int:
        """Celery: send again, every RESEND_AFTER_S, the jobs no worker has taken: a broker
        that restarted without persistence forgot them. A runner claims a job once, so a
        copy that is delivered anyway does nothing."""
        if self._config.executor != "celery":
            return 0
        sent = 0
        for job in self._store.jobs_queued_before(now - RESEND_AFTER_S):
            if now - self._resent.get(job.id, 0) < RESEND_AFTER_S:
                continue
            task = self._store.task_of(job.task_pk)
            spec = self._spec_of(task)
            targets = {t.service: t for t in spec.targets}
            current = self._store.current_jobs(job.task_pk)
            outputs = {j.service: j.outputs for j in current if j.stage == "build"}
            try:
                self._executor.submit(
                    self._job_spec(task, job, targets[job.service], spec.env_vars, outputs)
                )
            except Exception as exc:  # the broker is away: the next round tries again
                log.warning("job %s: could not send it again (%s)", job.id, exc)
                continue
            self._resent[job.id] = now
            sent += 1
        return sent

    def _step(self, job: JobRow) -> StepSpec | None:
        target = next(
            (t for t in self._store.task_spec(job.task_pk).targets if t.service == job.service),
            None,
        )
        if target is None:
            return None
        return target.build if job.stage == "build" else target.deploy

    def _start_queued(self, now: int) -> None:
        # Re-read: advancing may have ended some of the active tasks.
        active = self._store.tasks_in(TaskState.RUNNING, TaskState.CANCELLING)
        slots = self._config.max_parallel_tasks - len(active)
        busy = {t.workflow_name for t in active if not self._parallel(t.workflow_name)}
        after: int | None = None
        while slots > 0:
            # First in, first out, a batch at a time: a long queue is not read in full
            # on every pass, only as far as it takes to fill the free slots (one, mostly:
            # the slot a task that just ended freed).
            limit = QUEUED_BATCH if after is not None else min(slots, QUEUED_BATCH)
            batch = self._store.tasks_in(TaskState.QUEUED, limit=limit, after=after)
            if not batch:
                return
            after = batch[-1].pk
            for task in batch:
                if slots <= 0:
                    return
                serial = not self._parallel(task.workflow_name)
                if serial and task.workflow_name in busy:
                    continue
                # A restart waits until the processes of the attempt it replaces are gone.
                if self._store.has_live_jobs(task.pk):
                    if serial:
                        busy.add(task.workflow_name)
                    continue
                if self._isolated(task, self._start, task, now):
                    slots -= 1
                    if serial:
                        busy.add(task.workflow_name)

    def _start(self, task: Task, now: int) -> bool:
        """Start a queued task and send its builds; False if another writer started it
        first. The builds are queued in the start's own transaction."""
        # Read before anything is queued: nothing that can fail may come between
        # queuing a job and handing it to the executor.
        spec = self._spec_of(task)
        queued = self._store.start_task(task, now)
        if queued is None:
            return False
        running = replace(task, state=TaskState.RUNNING, start_time=now)
        if queued:
            self._isolated(running, self._send, running, spec, queued, now, {})
        else:  # no build to run (a restart whose builds all passed): on to the deploys
            self._isolated(running, self._advance_alone, running, now)
        return True

    def resubmit_queued(self) -> int:
        """Hand every queued job no runner has claimed to the executor again, on start:
        the local pool it waited in died with the last server, and a broker may have
        lost it (Redis without persistence). A runner claims a job once, so one sent
        twice still runs once."""
        now = self._clock()
        return sum(self._resend_queued(t, now) for t in self._store.tasks_in(TaskState.RUNNING))

    def _resend_queued(self, task: Task, now: int) -> int:
        """Hand the task's queued jobs to the executor again: how many it took."""
        jobs = self._store.current_jobs(task.pk)
        queued = [j for j in jobs if j.state is JobState.QUEUED]
        if not queued:
            return 0
        spec = self._spec_of(task)
        outputs = {j.service: j.outputs for j in jobs if j.stage == "build"}
        return self._send(task, spec, queued, now, outputs)

    def _submit(self, job: JobRow, spec: JobSpec, now: int) -> bool:
        """Hand a queued job to the executor. One it would not take (a broker that is
        down) goes back to pending and is tried again later, with backoff: never left
        queued where no runner will ever find it."""
        try:
            self._executor.submit(spec)
        except Exception as exc:
            delay = min(SUBMIT_BACKOFF_MAX_S, max(1.0, self._backoff.get(job.id, (0, 0))[1] * 2))
            self._backoff[job.id] = (self._monotonic() + delay, delay)
            self._store.move_job(replace(job, state=JobState.QUEUED), JobState.PENDING, now)
            log.warning(
                "job %s: the executor did not take it (%s); again in %.0fs", job.id, exc, delay
            )
            return False
        self._backoff.pop(job.id, None)
        return True

    def _spec_of(self, task: Task) -> TaskSpec:
        """`task`'s spec, read from the store once while it is among the SPECS_KEPT last
        ones asked for. Keyed by its workflow and id, which no other task ever takes."""
        key = (task.workflow_name, task.task_id)
        with self._specs_lock:
            spec = self._specs.get(key)
            if spec is not None:
                self._specs.move_to_end(key)
                return spec
        spec = self._store.task_spec(task.pk)
        with self._specs_lock:
            self._specs[key] = spec
            if len(self._specs) > SPECS_KEPT:
                self._specs.popitem(last=False)
        return spec

    def _parallel(self, workflow_name: str) -> bool:
        workflow = self._config.workflows.get(workflow_name)
        return workflow is not None and workflow.parallel

    def _advance_alone(self, task: Task, now: int) -> bool:
        """`_advance`, by one thread at a time per task. A runner's thread (its job ended)
        and the scheduler's (a full pass) may reach the same task together; each move is
        conditional, so both would be safe, but the loser's writes are wasted transactions
        on the database's one writer. The thread that finds the task taken leaves it to
        the other, which reads it again once done: what the late one saw is not missed.
        True if this call ended the task (the caller then fills the slot it freed)."""
        pk = task.pk
        with self._advancing_lock:
            if pk in self._advancing:
                self._advancing[pk] = True
                return False
            self._advancing[pk] = False
        try:
            while True:
                ended = self._advance(task, now)
                with self._advancing_lock:
                    if ended or not self._advancing[pk]:
                        del self._advancing[pk]
                        return ended
                    self._advancing[pk] = False
                now = self._clock()
                fresh = self._store.tasks_among({pk}, TaskState.RUNNING, TaskState.CANCELLING)
                if not fresh:
                    with self._advancing_lock:
                        del self._advancing[pk]
                    return False
                task = fresh[0]
        except BaseException:
            with self._advancing_lock:
                asked = self._advancing.pop(pk, False)
            if asked:  # the thread that left it to this one must not be let down
                self.wake(pk)
            raise

    def _advance(self, task: Task, now: int, tx: JobTransaction | None = None) -> bool:
        """Move the task on by what its jobs say, in `tx` or in transactions of its own;
        True if this ended it."""
        store: JobMoves = self._store if tx is None else tx
        jobs = store.current_jobs(task.pk)
        if any(j.attempt > task.attempt for j in jobs):
            # Restarted since `task` was read (another thread ended it, a client
            # restarted it): the new attempt is the next pass's, not this stale read's.
            return False
        if task.state is TaskState.CANCELLING:
            for job in jobs:
                if job.state in (JobState.PENDING, JobState.QUEUED):
                    store.move_job(job, JobState.CANCELLED, now, "task cancelled")
            if not store.has_live_jobs(task.pk):
                return self._finish(task, TaskState.CANCELLED, now, tx)
            return False
        builds = [j for j in jobs if j.stage == "build"]
        deploys = [j for j in jobs if j.stage == "deploy"]
        if self._dispatch(task, builds, now, {}, tx):
            return False
        if any(j.state not in TERMINAL_JOB_STATES for j in builds):
            return False
        if all(j.state is JobState.PASSED for j in builds):
            outputs = {j.service: j.outputs for j in builds}
            if self._dispatch(task, deploys, now, outputs, tx):
                return False
            if any(j.state not in TERMINAL_JOB_STATES for j in deploys):
                return False
        else:
            for job in deploys:
                if job.state is JobState.PENDING:
                    store.move_job(job, JobState.SKIPPED, now, "a build did not pass")
        outcome = task_outcome([j.state for j in builds], [j.state for j in deploys])
        return self._finish(task, outcome, now, tx)

    def _finish(
        self, task: Task, outcome: TaskState, now: int, tx: JobTransaction | None = None
    ) -> bool:
        store: JobMoves = self._store if tx is None else tx
        if not store.finish_task(task, outcome, now):
            return False

        def tell() -> None:
            log.info("%s#%s %s", task.workflow_name, task.task_id, outcome.value)
            took = None if task.start_time is None else now - task.start_time
            self._events.task_finished(
                task.workflow_name, task.task_id, public_status(outcome).value, took
            )

        if tx is None:
            tell()
        else:
            tx.after_commit(tell)
        return True

    def _dispatch(
        self,
        task: Task,
        stage_jobs: list[JobRow],
        now: int,
        outputs: dict[str, dict[str, str]],
        tx: JobTransaction | None = None,
    ) -> bool:
        """Start the stage's pending jobs; True if any was started (in `tx`: queued, to
        be sent once it commits)."""
        pending = [j for j in stage_jobs if j.state is JobState.PENDING]
        if not pending:
            return False
        spec = self._spec_of(task)
        started = False
        # One job at a time, queued then sent: a fault half-way leaves the rest pending,
        # for the next pass, rather than queued where no runner will look for them. (In
        # `tx`, sent once it commits: a fault undoes the step's moves and sends alike.)
        for job in pending:
            if self._backoff.get(job.id, (0.0, 0.0))[0] > self._monotonic():
                continue  # its last submit failed; not yet
            if not (self._store if tx is None else tx).move_job(job, JobState.QUEUED, now):
                continue
            queued = [replace(job, state=JobState.QUEUED)]
            if tx is None:
                started = self._send(task, spec, queued, now, outputs) > 0 or started
            else:
                tx.after_commit(functools.partial(self._send, task, spec, queued, now, outputs))
                started = True
        return started

    def _send(
        self,
        task: Task,
        spec: TaskSpec,
        queued: list[JobRow],
        now: int,
        outputs: dict[str, dict[str, str]],
    ) -> int:
        """Hand the task's queued jobs to the executor: how many it took."""
        targets = {t.service: t for t in spec.targets}
        taken = 0
        for job in queued:
            job_spec = self._job_spec(task, job, targets[job.service], spec.env_vars, outputs)
            taken += self._submit(job, job_spec, now)
        return taken

    def _job_spec(
        self,
        task: Task,
        job: JobRow,
        target: TargetSpec,
        env_vars: tuple[tuple[str, str], ...],
        outputs: dict[str, dict[str, str]],
    ) -> JobSpec:
        # A build gets its declared variables, a deploy what its build handed on; the
        # environment's vars win over both (a request never changes where a task deploys).
        if job.stage == "build":
            step, variables = target.build, dict(target.envs)
        else:
            step, variables = target.deploy, dict(outputs.get(job.service, {}))
        variables.update(env_vars)
        env = self._config.envs.get(task.env_name)
        secrets = env.resolved_secrets() if env else {}
        return JobSpec(
            job_id=job.id,
            task_pk=task.pk,
            workflow_name=task.workflow_name,
            task_id=task.task_id,
            attempt=job.attempt,
            stage=job.stage,
            service=job.service,
            env_name=task.env_name,
            repos=target.repos,
            script=step.script,
            timeout_s=step.timeout_s,
            variables=tuple(variables.items()),
            secrets=secrets,
            masked=tuple(self._config.secret_values()),
            cancel_grace_s=self._config.cancel_grace,
            log_max_bytes=self._config.log_max_bytes,
            heartbeat_s=min(5.0, self._config.heartbeat_timeout / 3),
            queue=step.queue or self._config.queue,
            sandbox=self._config.sandbox_of(job.service),
            network=self._config.network_of(job.service),
            outputs=target.build.outputs if job.stage == "build" else (),
            checkout=step.checkout,
        )
