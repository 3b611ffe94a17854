"""The celery executor beside the local one, in one run, on one machine.

Three setups (local executor; celery with 1 worker; celery with 2 workers), each with a
PostgreSQL database of its own, a real `conveyor serve` (and `conveyor worker`s, on this
same machine, with Redis as the broker), all started once and kept for the whole run.
Each round, every setup takes a turn at a block: create -> first job process started
over N tasks one at a time, then M trivial tasks on a parallel workflow created at
once: tasks per second. While one setup runs its block, the others are stopped
(SIGSTOP), so their idle work weighs on no one's block. Each setup's first block warms
it up and is not counted. Why it is built this way: ADR 0019, addendum.

    cd bench && ../.venv/bin/python distributed.py [--latency-tasks 120] \
        [--throughput-tasks 1000] [--rounds 6]

Its databases (conveyor_bench_dist_local0, _celery1, _celery2) are made anew at the
start and dropped at the end.
"""

import argparse
import collections
import contextlib
import functools
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import redis
import serving
from postgres_admin import as_admin, database_url, drop_database
from serving import serve_with_token, start_workers

from engine import CONFIG, Client, bench_home, pct

DB_NAME = "conveyor_bench_dist"
BROKER = "redis://127.0.0.1:6379/1"
BLOCK_DEADLINE_S = 900  # a block whose tasks do not end by then has gone wrong


def fresh_database(name: str) -> str:
    drop_database(name)
    as_admin(f'CREATE DATABASE "{name}"')
    return database_url(name)


def settle() -> None:
    """Write out what the machine still holds dirty (the last block's deleted files and
    rows): a block measures its own writes, not a flush it inherited."""
    os.sync()
    as_admin("CHECKPOINT")


def forget_queue(queue: str) -> None:
    """Drop what kombu keeps in the broker for `queue`: each block has one of its own,
    and would leave its keys in Redis for good."""
    broker = redis.Redis.from_url(BROKER)
    try:
        broker.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    finally:
        broker.close()


def on_postgres(text: str, database: str, queue: str | None) -> str:
    """The engine's config `text` on a fresh PostgreSQL database `database`; with a
    `queue`, run by celery workers through Redis, on that queue."""
    header = f"database_url: {fresh_database(database)}\n"
    if queue is not None:
        header += f"executor: celery\nbroker_url: '{BROKER}'\nqueue: {queue}\n"
    return header + text.replace("database_url: sqlite:///conveyor.db\n", "")


Setup: TypeAlias = tuple[str, int]  # (executor, workers)
LOCAL, CELERY_1, CELERY_2 = ("local", 0), ("celery", 1), ("celery", 2)
SETUPS = (LOCAL, CELERY_1, CELERY_2)
# The setups' order in each round, then again from the first. Every block leaves the
# machine changed for a while (the file system slower to create files in, ADR 0019;
# autovacuum to do): over six rounds each setup takes each place twice and comes right
# after each of the others three times (the warm-up blocks go in SETUPS' order first);
# the first three rounds give each setup each place once. Found by an exhaustive search.
ORDERS = (
    (LOCAL, CELERY_2, CELERY_1),
    (CELERY_2, CELERY_1, LOCAL),
    (CELERY_1, LOCAL, CELERY_2),
    (CELERY_1, CELERY_2, LOCAL),
    (CELERY_2, LOCAL, CELERY_1),
    (LOCAL, CELERY_1, CELERY_2),
)


def balanced(warm_up: tuple[Setup, ...], orders: tuple[tuple[Setup, ...], ...]) -> bool:
    """Whether `orders` after `warm_up` give each setup each place equally often (the
    first len(places) rounds once each) and put it right after each other one equally."""
    places = len(warm_up)
    blocks = [*warm_up, *(setup for order in orders for setup in order)]
    after = collections.Counter(zip(blocks[places - 1 : -1], blocks[places:], strict=True))
    at = collections.Counter((i, setup) for order in orders for i, setup in enumerate(order))
    first = {(i, setup) for order in orders[:places] for i, setup in enumerate(order)}
    return (
        len(first) == places * places
        and len(set(at.values())) == 1
        and len(set(after.values())) == 1
        and all(a != b for a, b in after)
    )


@dataclass
class Sample:
    """What one setup measured, over the rounds so far."""

    latencies: list[float] = field(default_factory=list)
    tasks: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds


class Running:
    """One setup's server and workers, from start to the end of the run."""

    def __init__(self, setup: Setup) -> None:
        executor, workers = setup
        self.procs: list[subprocess.Popen[bytes]] = []
        self.database = f"{DB_NAME}_{executor}{workers}"
        self.root, repo, self.marks, port, config = bench_home("conveyor-dist-")
        self.queue = f"bench-{port}" if executor == "celery" else None
        try:
            text = CONFIG.format(port=port, repo=repo, marks=self.marks)
            config.write_text(on_postgres(text, self.database, self.queue))
            server, url, token = serve_with_token(
                config, port, self.root / "server.log", access_log=False
            )
            self.procs.append(server)
            self.procs += start_workers(config, workers, self.root)
            self.client = Client(url, token)
            self.client.wait("stamp", self.client.create("stamp", "stamp"))
        except BaseException:
            self.stop()
            raise

    def block(self, latency_tasks: int, throughput_tasks: int) -> Sample:
        """`latency_tasks` one at a time (create -> job start), then `throughput_tasks`
        created at once (tasks per second). Returns once every task has ended and the
        jobs' workspaces are deleted: nothing of it runs while the setup is stopped."""
        client, marks = self.client, self.marks
        deadline = time.monotonic() + BLOCK_DEADLINE_S
        sample = Sample()
        for _ in range(latency_tasks):
            t0 = time.time()
            task_id = client.create("stamp", "stamp")
            mark = marks / str(task_id)
            wait_for(functools.partial(stamped, mark), deadline, 0.0005, "a job's start")
            sample.latencies.append(float(mark.read_text()) - t0)
            client.wait("stamp", task_id, poll_s=0.01, deadline=deadline)
        settle()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            ids = list(
                pool.map(lambda _: client.create("trivial", "trivial"), range(throughput_tasks))
            )
        for task_id in ids:
            done = marks / f"{task_id}.done"
            wait_for(done.exists, deadline, 0.01, "the tasks' deploys")
        sample.tasks, sample.seconds = len(ids), time.perf_counter() - t0
        for task_id in ids:
            client.wait("trivial", task_id, poll_s=0.01, deadline=deadline)
        workspaces = self.root / "data" / "workspaces"
        wait_for(functools.partial(emptied, workspaces), deadline, 0.01, "workspaces deleted")
        settle()
        return sample

    def pause(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop it and remove all it made; each part whatever became of the others."""
        with contextlib.ExitStack() as undo:
            undo.callback(drop_database, self.database)
            if self.queue is not None:
                undo.callback(forget_queue, self.queue)
            undo.callback(shutil.rmtree, self.root, ignore_errors=True)
            undo.callback(serving.stop, self.procs)
            undo.callback(self.resume)


def stamped(mark: Path) -> bool:
    return mark.exists() and mark.read_text().strip() != ""


def emptied(workspaces: Path) -> bool:
    """No workspace left, in use or in the trash (a runner moves one meanwhile)."""
    try:
        left = [entry.name for entry in os.scandir(workspaces)]
        return left in ([], [".trash"]) and not any(os.scandir(workspaces / ".trash"))
    except FileNotFoundError:
        return not workspaces.exists()


def wait_for(done: Callable[[], bool], deadline: float, poll_s: float, what: str) -> None:
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {BLOCK_DEADLINE_S} s for {what}")
        time.sleep(poll_s)


def name(setup: Setup) -> str:
    executor, workers = setup
    return "local executor" if executor == "local" else f"celery, {workers} worker(s) x 4"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-tasks", type=int, default=120)
    parser.add_argument("--throughput-tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    assert balanced(SETUPS, ORDERS)
    # A stopped setup outlives the script unless it is let go: on SIGTERM too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    latency_tasks = max(1, args.latency_tasks // args.rounds)
    throughput_tasks = max(1, args.throughput_tasks // args.rounds)
    with contextlib.ExitStack() as running_now:
        running: dict[Setup, Running] = {}
        for setup in SETUPS:
            running[setup] = Running(setup)
            running_now.callback(running[setup].stop)
            running[setup].pause()
        running_now.callback(let_go, running.values())  # first: none waits stopped
        for setup in SETUPS:  # warm-up: not counted
            running[setup].resume()
            running[setup].block(latency_tasks, throughput_tasks)
            running[setup].pause()
        samples, by_round = measure_rounds(running, args.rounds, latency_tasks, throughput_tasks)
    report(samples, by_round, args.rounds)


def let_go(running: Iterable[Running]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
    for each in running:
        each.resume()


def measure_rounds(
    running: dict[Setup, Running], rounds: int, latency_tasks: int, throughput_tasks: int
) -> tuple[dict[Setup, Sample], list[dict[Setup, float]]]:
    """Every setup's blocks pooled, and each block's rate by round."""
    samples = {setup: Sample() for setup in SETUPS}
    by_round: list[dict[Setup, float]] = []
    for r in range(rounds):
        by_round.append({})
        for setup in ORDERS[r % len(ORDERS)]:
            running[setup].resume()
            block = running[setup].block(latency_tasks, throughput_tasks)
            running[setup].pause()
            total = samples[setup]
            total.latencies += block.latencies
            total.tasks += block.tasks
            total.seconds += block.seconds
            by_round[-1][setup] = block.rate
            print(
                f"round {r + 1}, {name(setup)}: p50 {pct(block.latencies, 50):.1f} ms, "
                f"{block.rate:.1f} tasks/s",
                flush=True,
            )
    return samples, by_round


def report(samples: dict[Setup, Sample], by_round: list[dict[Setup, float]], rounds: int) -> None:
    local_rate = samples[SETUPS[0]].rate
    rows = [
        "| setup (PostgreSQL) | create → job start p50 ms | p99 ms | tasks/s | x local |",
        "|---|---:|---:|---:|---:|",
    ]
    for setup, s in samples.items():
        rows.append(
            f"| {name(setup)} | {pct(s.latencies, 50):.1f} | {pct(s.latencies, 99):.1f} "
            f"| {s.rate:.1f} | {s.rate / local_rate:.3f} |"
        )
    print("\n".join(rows))
    for setup in SETUPS[1:]:
        ratios = " ".join(f"{rates[setup] / rates[SETUPS[0]]:.2f}" for rates in by_round)
        print(f"{name(setup)} / local executor, round by round: {ratios}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; server, workers, "
        f"PostgreSQL and Redis all on it; {rounds} rounds in the orders of ORDERS; "
        "each setup started once, its first block not counted, the others stopped"
    )


if __name__ == "__main__":
    main()
