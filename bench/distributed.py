"""The celery executor beside the local one, in one run, on one machine.

Three setups (local executor; celery with 1 worker; celery with 2 workers), each with a
PostgreSQL database of its own, a real `conveyor serve` (and `conveyor worker`s, on this
same machine, with Redis as the broker), all started once and kept for the whole run.
Each round, every setup takes a turn (the order rotated each round) at a block: create
-> first job process started over N tasks one at a time, then M trivial tasks on a
parallel workflow created at once: tasks per second. The others are stopped meanwhile
(SIGSTOP): idle, they took 0.8% (local), 1.7% and 2.1% (celery) of a core, which would
have weighed more on the local executor's blocks than on the others'.

    cd bench && ../.venv/bin/python distributed.py [--latency-tasks 120] \
        [--throughput-tasks 1000] [--rounds 6]

The databases (conveyor_bench_dist_*) are made anew at the start and dropped at the end.

On a 2-core machine one block's rate swings by a quarter either way from the next
block's of the same setup (docs/benchmarks.md, eighth session): rounds are what make the
ratio worth reading to a few hundredths. Until the thirteenth session every block had a
server and workers of its own, started for it: a block then also measured their warm-up
(new threads, connections, prepared statements), more of it the shorter the block
(celery with 2 workers made 0.889x the local executor in blocks of 50 tasks and 0.941x
in blocks of 300, in one interleaved probe). Now each setup warms up once, in a block
that is not counted, and a running service is what the rounds compare.
"""

import argparse
import os
import platform
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis
import sqlalchemy as sa
from serving import serve_with_token, start_workers, stop

from engine import CONFIG, Client, bench_home, pct

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DB_NAME = "conveyor_bench_dist"
BROKER = "redis://127.0.0.1:6379/1"


def as_admin(*statements: str) -> None:
    """Run `statements` on the server's `postgres` database, each outside a transaction."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    admin.dispose()


def fresh_database(name: str = DB_NAME) -> str:
    as_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


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


def on_postgres(
    text: str, port: int, celery: bool, queue_prefix: str, database: str = DB_NAME
) -> str:
    """The engine's config `text` on a fresh PostgreSQL database; with `celery`, run by
    workers through Redis, on a queue of its own."""
    header = f"database_url: {fresh_database(database)}\n"
    if celery:
        header += f"executor: celery\nbroker_url: '{BROKER}'\nqueue: {queue_prefix}-{port}\n"
    return header + text.replace("database_url: sqlite:///conveyor.db\n", "")


SETUPS = (("local", 0), ("celery", 1), ("celery", 2))


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

    def __init__(self, setup: str, workers: int) -> None:
        self.root, repo, self.marks, port, config = bench_home("conveyor-dist-")
        text = CONFIG.format(port=port, repo=repo, marks=self.marks)
        self.database = f"{DB_NAME}_{setup}{workers}"
        self.queue = f"bench-{port}" if setup == "celery" else None
        config.write_text(on_postgres(text, port, setup == "celery", "bench", self.database))
        server, url, token = serve_with_token(
            config, port, self.root / "server.log", access_log=False
        )
        self.procs = [server]
        try:
            self.procs += start_workers(config, workers, self.root)
            self.client = Client(url, token)
            self.client.wait("stamp", self.client.create("stamp", "stamp"))
        except BaseException:
            self.stop()
            raise

    def block(self, latency_tasks: int, throughput_tasks: int) -> Sample:
        """`latency_tasks` one at a time (create -> job start), then `throughput_tasks`
        created at once (tasks per second)."""
        client, marks = self.client, self.marks
        sample = Sample()
        for _ in range(latency_tasks):
            t0 = time.time()
            task_id = client.create("stamp", "stamp")
            mark = marks / str(task_id)
            while not (mark.exists() and mark.read_text().strip()):
                time.sleep(0.0005)
            sample.latencies.append(float(mark.read_text()) - t0)
            client.wait("stamp", task_id, poll_s=0.01)
        settle()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            ids = list(
                pool.map(lambda _: client.create("trivial", "trivial"), range(throughput_tasks))
            )
        for task_id in ids:
            while not (marks / f"{task_id}.done").exists():
                time.sleep(0.01)
        sample.tasks, sample.seconds = len(ids), time.perf_counter() - t0
        for task_id in ids:  # ended, recorded: nothing runs while it is stopped
            client.wait("trivial", task_id, poll_s=0.01)
        settle()
        return sample

    def pause(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        stop(self.procs)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.queue is not None:
            forget_queue(self.queue)
        as_admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def name(setup: str, workers: int) -> str:
    return "local executor" if setup == "local" else f"celery, {workers} worker(s) x 4"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-tasks", type=int, default=120)
    parser.add_argument("--throughput-tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    samples = {setup: Sample() for setup in SETUPS}
    latency_tasks = max(1, args.latency_tasks // args.rounds)
    throughput_tasks = max(1, args.throughput_tasks // args.rounds)
    by_round: list[dict[tuple[str, int], float]] = []
    running: dict[tuple[str, int], Running] = {}
    try:
        for setup in SETUPS:
            running[setup] = Running(*setup)
            running[setup].block(latency_tasks, throughput_tasks)  # warm-up: not counted
            running[setup].pause()
        measure_rounds(running, args.rounds, latency_tasks, throughput_tasks, samples, by_round)
    finally:
        for each in running.values():
            each.stop()
    report(samples, by_round, args.rounds)


def measure_rounds(
    running: dict[tuple[str, int], Running],
    rounds: int,
    latency_tasks: int,
    throughput_tasks: int,
    samples: dict[tuple[str, int], Sample],
    by_round: list[dict[tuple[str, int], float]],
) -> None:
    for r in range(rounds):
        by_round.append({})
        # Every block leaves the file system slower to create files in for a while (ADR
        # 0019): the order rotates each round, so each setup takes each place in turn.
        for setup in SETUPS[r % len(SETUPS) :] + SETUPS[: r % len(SETUPS)]:
            running[setup].resume()
            block = running[setup].block(latency_tasks, throughput_tasks)
            running[setup].pause()
            total = samples[setup]
            total.latencies += block.latencies
            total.tasks += block.tasks
            total.seconds += block.seconds
            by_round[-1][setup] = block.rate
            print(
                f"round {r + 1}, {name(*setup)}: p50 {pct(block.latencies, 50):.1f} ms, "
                f"{block.rate:.1f} tasks/s",
                flush=True,
            )


def report(
    samples: dict[tuple[str, int], Sample],
    by_round: list[dict[tuple[str, int], float]],
    rounds: int,
) -> None:
    local_rate = samples[SETUPS[0]].rate
    rows = [
        "| setup (PostgreSQL) | create → job start p50 ms | p99 ms | tasks/s | x local |",
        "|---|---:|---:|---:|---:|",
    ]
    for setup, s in samples.items():
        rows.append(
            f"| {name(*setup)} | {pct(s.latencies, 50):.1f} | {pct(s.latencies, 99):.1f} "
            f"| {s.rate:.1f} | {s.rate / local_rate:.3f} |"
        )
    print("\n".join(rows))
    for setup in SETUPS[1:]:
        ratios = " ".join(f"{rates[setup] / rates[SETUPS[0]]:.2f}" for rates in by_round)
        print(f"{name(*setup)} / local executor, round by round: {ratios}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; server, workers, "
        f"PostgreSQL and Redis all on it; {rounds} rounds, the order rotated each round; "
        "each setup started once, its first block not counted"
    )


if __name__ == "__main__":
    main()
