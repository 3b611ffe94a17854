"""What Conveyor's processes hold in memory: with many tasks stored, and over a soak.

1. stored: a SQLite database filled with N tasks (bench/lookup.py's fill), `conveyor
   serve` on it, then the reads people make (lookups, workflow lists, task lists and
   details, pages): the server's RSS after start and at the end, and its peak (VmHWM);
2. soak: M trivial tasks through the local executor (SQLite), 4 clients creating, the
   server's RSS sampled after the first 1,000 ended and at the end: the ratio shows a
   leak (flat: <= 1.1);
3. with --celery: the same soak on PostgreSQL with `conveyor worker` (Redis broker):
   the worker's RSS (its process and its pool's children) after 1,000 and at the end.

    .venv/bin/python bench/memory.py [--stored 100000] [--soak 10000] [--celery]
"""

import argparse
import os
import platform
import random
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
from distributed import forget_queue, on_postgres
from lookup import CONFIG as LOOKUP_CONFIG
from lookup import OUT, WORKFLOWS, fill, sample_commits
from postgres_admin import drop_database
from serving import free_port, rss_mb, serve_with_token, start_workers, stop

from conveyor.config_file import parse_config
from conveyor.storage import migrate
from conveyor.wiring import build_container
from engine import CONFIG, Client, bench_home


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants (a celery worker and its pool)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += rss_mb(p)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def stored(n: int) -> str:
    """The server's memory with `n` tasks stored, after the reads people make."""
    path = OUT / f"memory-{n}.db"
    OUT.mkdir(exist_ok=True)
    url = f"sqlite:///{path}"
    port = free_port()
    config = OUT / f"memory-{n}.yaml"
    wfs = ", ".join(f"{w}: {{env: dev, services: [svc]}}" for w in WORKFLOWS)
    config.write_text(LOOKUP_CONFIG.format(port=port, database_url=url, workflows=wfs))
    container = build_container(parse_config(config.read_text()))
    migrate.upgrade(container.db)
    fill(container.db, n)
    commits = sample_commits(container.db, 1000)
    container.db.dispose()
    proc, base, token = serve_with_token(config, port, OUT / "memory-server.log")
    try:
        started = rss_mb(proc.pid)
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        rng = random.Random(3)
        for sha in commits:
            api.get("/api/directory/workflowTask", params={"commitId": sha}).raise_for_status()
            api.get("/api/directory/workflowTask", params={"commitId": sha[:8]})
        for _ in range(20):
            api.get("/api/workflows").raise_for_status()
        for wf in WORKFLOWS:
            before = None
            for _ in range(20):  # the first 1,000 tasks of each workflow, a page at a time
                params = {"limit": "50"} | ({"before": str(before)} if before else {})
                page = api.get(f"/api/workflows/{wf}/tasks", params=params).json()
                before = page["next_before"]
        for _ in range(1000):
            wf = rng.choice(WORKFLOWS)
            task_id = rng.randint(1, n // len(WORKFLOWS))
            api.get(f"/api/workflows/{wf}/tasks/{task_id}")
        for page in ("/", f"/workflows/{WORKFLOWS[0]}", f"/workflows/{WORKFLOWS[0]}/tasks/1"):
            api.get(page)
        api.close()
        end, peak = rss_mb(proc.pid), rss_mb(proc.pid, "VmHWM")
    finally:
        stop([proc])
    return (
        f"| server, {n:,} tasks stored (SQLite) | {started:.0f} MB after start | "
        f"{end:.0f} MB after 5,000 reads | peak {peak:.0f} MB |"
    )


def soak(n: int, celery: bool) -> str:
    """RSS after the first 1,000 tasks ended and after `n`: the server's, or with
    `celery` the worker's."""
    root, repo, marks, port, config = bench_home("conveyor-memory-")
    text = CONFIG.format(port=port, repo=repo, marks=marks)
    database, queue = "conveyor_bench_memory", f"memory-{port}"
    if celery:
        text = on_postgres(text, database, queue)
    config.write_text(text)  # its relative paths are the config file's: under root
    procs = []
    try:
        server, url, token = serve_with_token(config, port, root / "server.log", access_log=False)
        procs.append(server)
        procs += start_workers(config, 1 if celery else 0, root)
        watched = procs[-1].pid
        measure: Callable[[], float] = (lambda: tree_rss_mb(watched)) if celery else (
            lambda: rss_mb(watched))  # fmt: skip
        client = Client(url, token)
        samples: dict[int, float] = {}
        t0 = time.monotonic()
        done = 0
        with ThreadPoolExecutor(max_workers=4) as pool:
            while done < n:
                batch = min(1000, n - done)
                ids = list(pool.map(lambda _: client.create("trivial", "trivial"), range(batch)))
                for task_id in ids:
                    while not (marks / f"{task_id}.done").exists():
                        time.sleep(0.01)
                done += batch
                samples[done] = measure()
                print(f"  {done:,} tasks: {samples[done]:.0f} MB", flush=True)
        rate = n / (time.monotonic() - t0)
        first, last = samples[min(samples)], samples[n]
        who = "celery worker (PostgreSQL, 4 threads)" if celery else "server (SQLite, local)"
        return (
            f"| {who}, soak of {n:,} tasks ({rate:.0f}/s) | {first:.0f} MB after 1,000 | "
            f"{last:.0f} MB after {n:,} | **{last / first:.2f}x** |"
        )
    finally:
        stop(procs)
        shutil.rmtree(root, ignore_errors=True)
        if celery:
            try:
                forget_queue(queue)
            finally:
                drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--soak", type=int, default=10_000)
    parser.add_argument("--celery", action="store_true", help="also soak a celery worker")
    args = parser.parse_args()
    rows = ["| process | | | |", "|---|---|---|---:|", stored(args.stored)]
    print(rows[-1], flush=True)
    rows.append(soak(args.soak, celery=False))
    print(rows[-1], flush=True)
    if args.celery:
        rows.append(soak(args.soak, celery=True))
    print("\n".join(rows))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
