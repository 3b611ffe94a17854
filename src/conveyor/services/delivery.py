"""The sender: delivers the outbox's notifications, at least once, in order per key,
never blocking the API or the scheduler (docs/adr/0013)."""

import functools
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Protocol

from conveyor.domain.notifications import (
    GITLAB,
    Judgement,
    Verdict,
    backoff_s,
    judge,
    shown_url,
)
from conveyor.domain.outbox import HttpAnswer, NoAnswer, OutboxEntry, Undeliverable

log = logging.getLogger("conveyor.notifications")

DELIVERED = "delivered"
DROPPED = "dropped"
KEYS_PER_PASS = 500
# Retrying a message this long after it was written gives up, with the last reason.
MAX_AGE_S = 24 * 3600
# Delivered, superseded and dropped messages, and hook delivery ids, are kept this long.
RETENTION_S = 30 * 24 * 3600
PRUNE_EVERY_S = 3600.0
# Requests at once: GitLab's statuses and webhook events apart, so endpoints that hang
# cannot hold GitLab's; and at most this many per webhook URL.
WORKERS = 4
PER_URL = 2


class Poster(Protocol):
    def post(self, entry: OutboxEntry) -> HttpAnswer:
        """POST the message; raises NoAnswer or Undeliverable."""
        ...


class OutboxPort(Protocol):
    def waiting(
        self,
        now: int,
        limit: int,
        skip_keys: Collection[str] = (),
        skip_urls: Collection[str] = (),
    ) -> list[OutboxEntry]: ...

    def supersede(
        self, ids: Sequence[int], by: int, attempts: int, next_time: int, now: int
    ) -> None: ...

    def finish(self, msg_id: int, state: str, now: int, error: str | None = None) -> None: ...

    def retry_later(self, msg_id: int, attempts: int, next_time: int, error: str) -> None: ...

    def prune(self, before: int) -> int: ...


class NotificationSender:
    """Each pass sends, per key, the message due now: a GitLab status at its latest (the
    ones before it superseded), a webhook event in order. A key with a request in
    flight waits for its answer, so nothing overtakes; other keys go on meanwhile."""

    def __init__(
        self,
        store: OutboxPort,
        poster: Poster,
        clock: Callable[[], float],
        *,
        poll_s: float = 0.5,
    ) -> None:
        self._store = store
        self._poster = poster
        self._clock = clock
        self._poll_s = poll_s
        self._pools = {
            GITLAB: ThreadPoolExecutor(WORKERS, thread_name_prefix="notify-gitlab"),
            "webhook": ThreadPoolExecutor(WORKERS, thread_name_prefix="notify-webhook"),
        }
        self._inflight: set[str] = set()
        self._per_url: Counter[str] = Counter()
        # Keys whose last attempt could not be recorded (the database away): not before.
        self._cooling: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def deliver_due(self) -> list["Future[None]"]:
        """One pass: start sending what is due; the futures end with their attempts."""
        now = self._clock()
        # Keys in flight are taken before the read: one that ends in between was read
        # still waiting, and must not be sent again.
        with self._lock:
            busy = set(self._inflight)
            per_url = Counter(self._per_url)
        for key, until in list(self._cooling.items()):
            if until <= now:
                del self._cooling[key]
        capped = [url for url, n in per_url.items() if n >= PER_URL]
        groups: dict[str, list[OutboxEntry]] = {}
        skip = busy | set(self._cooling)
        for entry in self._store.waiting(int(now), KEYS_PER_PASS, skip, capped):
            groups.setdefault(entry.key, []).append(entry)
        started = []
        for key, entries in groups.items():
            if key in busy or self._cooling.get(key, 0) > now:
                continue
            entry = entries[0]
            if entry.coalesce and len(entries) > 1:
                entry, older = entries[-1], entries[:-1]
                attempts = max(e.attempts for e in entries)
                next_time = max(e.next_time for e in entries)
                self._store.supersede(
                    [e.id for e in older], entry.id, attempts, next_time, int(now)
                )
                entry = replace(entry, attempts=attempts, next_time=next_time)
            if entry.next_time > now:
                continue
            webhook = entry.channel != GITLAB
            if webhook and per_url[entry.url] >= PER_URL:
                continue
            with self._lock:
                self._inflight.add(key)
                if webhook:
                    per_url[entry.url] += 1
                    self._per_url[entry.url] += 1
            pool = self._pools[GITLAB if entry.channel == GITLAB else "webhook"]
            future = pool.submit(self._attempt, entry)
            future.add_done_callback(functools.partial(self._done, entry))
            started.append(future)
        return started

    def _done(self, entry: OutboxEntry, _future: "Future[None]") -> None:
        with self._lock:
            self._inflight.discard(entry.key)
            if entry.channel != GITLAB:
                self._per_url[entry.url] -= 1
                if self._per_url[entry.url] <= 0:
                    del self._per_url[entry.url]
        self._wake.set()

    def _attempt(self, entry: OutboxEntry) -> None:
        try:
            verdict = self._send(entry)
            self._record(entry, verdict)
        except Exception as exc:
            # The outbox could not take the result: the message stays waiting; its key
            # rests a while rather than being sent again at once.
            self._cooling[entry.key] = self._clock() + backoff_s(entry.attempts + 1)
            log.warning("notification %d: cannot record its delivery: %s", entry.id, exc)

    def _send(self, entry: OutboxEntry) -> Judgement:
        try:
            answer = self._poster.post(entry)
        except NoAnswer as exc:
            return Judgement(Verdict.RETRY, f"no answer: {exc}")
        except Undeliverable as exc:
            return Judgement(Verdict.DROP, str(exc))
        except Exception as exc:
            log.exception("notification %d: sending failed", entry.id)
            return Judgement(Verdict.RETRY, f"internal error: {exc.__class__.__name__}: {exc}")
        return judge(entry.channel, answer.status, answer.headers, answer.text)

    def _record(self, entry: OutboxEntry, verdict: Judgement) -> None:
        now = self._clock()
        what = f"{entry.event} of {entry.workflow_name}#{entry.task_id} to {shown_url(entry.url)}"
        if verdict.verdict is Verdict.RETRY and now - entry.create_time >= MAX_AGE_S:
            verdict = Judgement(Verdict.DROP, f"gave up after 24h: {verdict.reason}")
        if verdict.verdict is Verdict.DELIVERED:
            self._store.finish(entry.id, DELIVERED, int(now), verdict.reason or None)
        elif verdict.verdict is Verdict.RETRY:
            attempts = entry.attempts + 1
            wait = backoff_s(attempts, verdict.retry_after_s)
            self._store.retry_later(entry.id, attempts, math.ceil(now + wait), verdict.reason)
            log.warning(
                "notification %s: %s; attempt %d, next in %.0fs",
                what,
                verdict.reason,
                attempts,
                wait,
            )
        else:
            self._store.finish(entry.id, DROPPED, int(now), verdict.reason)
            log.warning("notification %s dropped: %s", what, verdict.reason)

    # -- the loop -------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notify-sender", daemon=True)
        self._thread.start()

    def prune(self) -> int:
        """Forget what ended more than RETENTION_S ago (hourly, from the loop)."""
        return self._store.prune(int(self._clock() - RETENTION_S))

    def _run(self) -> None:
        next_prune = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if self._clock() >= next_prune:
                    next_prune = self._clock() + PRUNE_EVERY_S
                    self.prune()
                self.deliver_due()
            except Exception as exc:
                # The database away: the messages wait in it; try again next pass.
                log.warning("notifications: cannot read the outbox: %s", exc)
            self._wake.wait(self._poll_s)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        # A request in flight is not waited for: its message stays waiting in the
        # outbox, and the next server sends it again (at least once).
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
