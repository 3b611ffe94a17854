"""GET by commitId, and a task's detail, through the real HTTP server, beside a bare
route on the same server.

Fills a database with N tasks (3 commits each), starts `conveyor serve` as its own
process, then for each route measures latency (one connection, one request at a time)
and throughput (several keep-alive connections). Run by hand:

    .venv/bin/python bench/lookup.py        # SQLite and PostgreSQL, 1,000,000 tasks
    .venv/bin/python bench/lookup.py --database-url sqlite:///bench/out/mine.db   # one

Both databases are measured in one run by default: a SQLite file under bench/out/, then
the database conveyor_bench_lookup_<tasks> on the PostgreSQL at 127.0.0.1:5432 (made if
missing; when it cannot be, the SQLite figures are printed and the run exits 1). A
filled database is kept and reused by the next run with the same size. The throughput
of the routes is measured in rounds where they take turns, in the reverse order every
other round, and each ratio to the bare route is taken within a round: this machine
drifts over a run. The figures also go to bench/out/lookup.json.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from postgres_admin import ADMIN_URL, admin_connection, database_url
from serving import free_port, start_conveyor, stop, wait_healthy

from conveyor.config_file import parse_config
from conveyor.storage import migrate
from conveyor.storage.db import Database
from conveyor.storage.tables import task_commits, tasks
from conveyor.wiring import build_container

OUT = Path(__file__).parent / "out"
WORKFLOWS = [f"team-{i}-deploy" for i in range(10)]
CONFIG = """
public_url: http://127.0.0.1:{port}
database_url: {database_url}
repos: {{app: {{url: /nonexistent}}}}
services: {{svc: {{build: {{repos: [app], script: "true"}}, deploy: {{script: "true"}}}}}}
envs: {{dev: {{}}}}
workflows: {{{workflows}}}
roles: {{admin: {{permissions: [task:view], workflows: ["*"]}}}}
"""
SPEC = {"workflow_name": "", "env_name": "dev", "env_vars": [], "targets": []}
BATCH = 20_000


def random_sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(160):040x}"


def task_batches(
    n: int, rng: random.Random
) -> Iterator[tuple[list[dict[str, object]], list[dict[str, object]]]]:
    now = int(time.time()) - n
    for start in range(1, n + 1, BATCH):
        task_rows, commit_rows = [], []
        for pk in range(start, min(start + BATCH, n + 1)):
            wf = WORKFLOWS[pk % len(WORKFLOWS)]
            task_rows.append(
                {
                    "id": pk,
                    "workflow_name": wf,
                    "task_id": pk // len(WORKFLOWS) + 1,
                    "env_name": "dev",
                    "state": "passed",
                    "attempt": 1,
                    "create_time": now + pk,
                    "start_time": now + pk,
                    "end_time": now + pk + 60,
                    "created_by": "bench",
                    "spec": {**SPEC, "workflow_name": wf},
                }
            )
            for repo in ("app", "lib", "infra"):
                commit_rows.append(
                    {
                        "task_pk": pk,
                        "service": "svc",
                        "repo_name": repo,
                        "kind": "branch",
                        "ref": "main",
                        "pr": 0,
                        "commit_sha": random_sha(rng),
                    }
                )
        yield task_rows, commit_rows


def fill(db: Database, n: int) -> None:
    with db.read() as conn:
        have = conn.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one()
    if have == n:
        print(f"reusing {n:,} tasks already in the database", flush=True)
        return
    if have:
        sys.exit(
            f"{db.engine.url.render_as_string()} holds {have:,} tasks, not {n:,} (a fill "
            "stopped halfway, say): delete the file or drop the database, or pick another"
        )
    t0 = time.perf_counter()
    rng = random.Random(42)
    for i, (task_rows, commit_rows) in enumerate(task_batches(n, rng)):
        with db.write() as conn:
            conn.execute(tasks.insert(), task_rows)
            conn.execute(task_commits.insert(), commit_rows)
        if i % 10 == 0:
            print(f"  filled {(i + 1) * BATCH:,} tasks", flush=True)
    with db.write() as conn:
        conn.exec_driver_sql("ANALYZE")
    print(f"filled {n:,} tasks in {time.perf_counter() - t0:.0f}s", flush=True)


def sample_commits(db: Database, k: int) -> list[str]:
    with db.read() as conn:
        top = conn.execute(sa.select(sa.func.max(task_commits.c.id))).scalar_one()
        rng = random.Random(7)
        ids = [rng.randint(1, top) for _ in range(k)]
        return list(
            conn.execute(
                sa.select(task_commits.c.commit_sha).where(task_commits.c.id.in_(ids))
            ).scalars()
        )


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


def _raw(path: str, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode()


async def latency(port: int, paths: list[str], token: str | None, n: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    for i in range(n):
        raw = _raw(paths[i % len(paths)], token)
        t0 = time.perf_counter()
        status = await _request(reader, writer, raw)
        times.append(time.perf_counter() - t0)
        assert status == 200, status
    writer.close()
    return times


async def throughput(
    port: int, paths: list[str], token: str | None, conns: int, seconds: float
) -> float:
    """Requests a second over `seconds`, timed from when every connection is open."""
    opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(conns)]
    done = 0
    t0 = time.perf_counter()
    stop = t0 + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        reader, writer = opened[offset]
        i = offset
        while time.perf_counter() < stop:
            status = await _request(reader, writer, _raw(paths[i % len(paths)], token))
            assert status == 200, status
            done += 1
            i += conns

    await asyncio.gather(*(worker(k) for k in range(conns)))
    took = time.perf_counter() - t0
    for _, writer in opened:
        writer.close()
    return done / took


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] * 1000


ROUTES = ("hello (/healthz)", "lookup, full id", "lookup, 8-char prefix", "task detail (status)")


def postgres_database(n: int) -> str:
    """The default PostgreSQL database for `n` tasks (one per size, kept for the next run
    like the SQLite file), made if missing. A RuntimeError says why it cannot be."""
    name = f"conveyor_bench_lookup_{n}"
    try:
        with admin_connection() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if found is None:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.DBAPIError as exc:
        raise RuntimeError(f"no database {name} at {ADMIN_URL}: {exc.orig}") from exc
    return database_url(name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url",
        action="append",
        help="a database to measure, once per database (default: a SQLite file under "
        "bench/out/ and a PostgreSQL database on 127.0.0.1, one per size)",
    )
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=3000, help="per route, for latency")
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="per route, for throughput, over all rounds"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="the routes take turns this often (even: ABBA)"
    )
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    OUT.mkdir(exist_ok=True)
    urls: list[str | None] = args.database_url or [
        f"sqlite:///{OUT / f'lookup-{args.tasks}.db'}",
        None,  # the default PostgreSQL database, made once SQLite is measured
    ]
    tables, runs, missed = [], [], []
    for url in urls:
        if url is None:
            try:
                url = postgres_database(args.tasks)
            except RuntimeError as exc:
                missed.append(f"PostgreSQL not measured: {exc}")
                continue
        backend = sa.make_url(url).get_backend_name()
        results = measure(url, args)
        tables.append(report(results, f"{backend}, {args.tasks:,} tasks"))
        runs.append(
            {
                "database": sa.make_url(url).render_as_string(),
                "tasks": args.tasks,
                "rounds": args.rounds,
                "seconds": args.seconds,
                "routes": results,
            }
        )
    (OUT / "lookup.json").write_text(json.dumps(runs, indent=2))
    print("\n\n".join(tables + missed))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    if missed:
        sys.exit(1)


def measure(database_url: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each route's latency, then its throughput in rounds where the routes take turns,
    in the reverse order every other round, so that the machine's drift over the run
    falls on every route alike and on both sides of the bare route."""
    port = free_port()
    cfg_path = OUT / "lookup.yaml"
    cfg_path.write_text(
        CONFIG.format(
            port=port,
            database_url=database_url,
            workflows=", ".join(f"{w}: {{env: dev, services: [svc]}}" for w in WORKFLOWS),
        )
    )
    config = parse_config(cfg_path.read_text(), base=OUT)
    container = build_container(config)
    migrate.upgrade(container.db)
    fill(container.db, args.tasks)
    token, _ = container.tokens.issue("bench", ["admin"], None)
    shas = sample_commits(container.db, 2000)
    container.db.dispose()

    server = start_conveyor(["serve", "-c", str(cfg_path), "--port", str(port), "--no-access-log"])
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server)
        base = "/api/directory/workflowTask?commitId="
        routes = dict(
            zip(
                ROUTES,
                [
                    (["/healthz"], None),
                    ([base + s for s in shas], token),
                    ([base + s[:8] for s in shas], token),
                    (detail_paths(args.tasks, 2000), token),
                ],
                strict=True,
            )
        )
        # Every lookup must find its task, or the numbers measure nothing.
        for name in ("lookup, 8-char prefix", "task detail (status)"):
            check = asyncio.run(_check_found(port, routes[name][0][:50], token))
            assert check == 50, (name, check)
        results: dict[str, dict[str, Any]] = {}
        for name, (paths, tok) in routes.items():
            asyncio.run(latency(port, paths, tok, 300))  # warm-up
            lat = asyncio.run(latency(port, paths, tok, args.requests))
            results[name] = {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "rps": []}
        window = args.seconds / args.rounds
        for round_ in range(args.rounds):
            for name in ROUTES if round_ % 2 == 0 else ROUTES[::-1]:
                paths, tok = routes[name]
                rps = asyncio.run(throughput(port, paths, tok, args.connections, window))
                results[name]["rps"].append(rps)
        hello = results[ROUTES[0]]["rps"]
        for r in results.values():
            r["ratios"] = [x / h for x, h in zip(r["rps"], hello, strict=True)]
        for name in ROUTES:
            r = results[name]
            print(
                f"{name:<24} p50 {r['p50_ms']:6.2f} ms p99 {r['p99_ms']:6.2f} ms "
                + " ".join(f"{x:6.0f}" for x in r["rps"])
                + " req/s",
                flush=True,
            )
    finally:
        stop([server])
    return results


def report(results: dict[str, dict[str, Any]], what: str) -> str:
    """A table: each route's median req/s over the rounds, and its ratio to the bare
    route in the same round, median (lowest-highest) over the rounds."""
    lines = [
        f"| route ({what}) | p50 ms | p99 ms | req/s | x hello, median (range) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        ratios = r["ratios"]
        spread = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        lines.append(
            f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{statistics.median(r['rps']):.0f} | {spread} |"
        )
    return "\n".join(lines)


def detail_paths(n: int, k: int) -> list[str]:
    """`GET /api/workflows/{name}/tasks/{id}` (what a client waiting on a task polls)
    for `k` of the `n` tasks task_batches stores, at random."""
    rng = random.Random(11)
    pks = [rng.randint(1, n) for _ in range(k)]
    return [
        f"/api/workflows/{WORKFLOWS[pk % len(WORKFLOWS)]}/tasks/{pk // len(WORKFLOWS) + 1}"
        for pk in pks
    ]


async def _check_found(port: int, paths: list[str], token: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    found = 0
    for path in paths:
        writer.write(_raw(path, token))
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(h[15:]) for h in head.split(b"\r\n") if h[:15].lower() == b"content-length:"
        )
        body = json.loads(await reader.readexactly(length))
        found += len(body) >= 1 if isinstance(body, list) else "task_id" in body
    writer.close()
    return found


if __name__ == "__main__":
    main()
