"""A soak under chaos: tasks at a steady rate on celery + PostgreSQL + Redis, while a
chaos loop restarts PostgreSQL, Redis and workers at random. At the end every task
must be terminal, none run twice, no process left, every failure with its reason.

    .venv/bin/python bench/soak.py [--minutes 30] [--every 2.0] [--workers 2]

Everything runs on this machine, as real processes: a PostgreSQL and a Redis of the
soak's own (on free ports), `conveyor serve`, and `conveyor worker`s. The figures are
printed as a Markdown table for docs/reliability.md.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx2 as httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving import free_port, start_conveyor, stop, wait_healthy
from tests.e2e.services import PrivatePostgres, PrivateRedis

from conveyor.config_file import load_config
from conveyor.storage import migrate
from conveyor.wiring import build_container

CONFIG = """
public_url: http://127.0.0.1:{port}
database_url: {database_url}
executor: celery
broker_url: {broker_url}
data_dir: {data}
max_parallel_tasks: 8
cancel_grace: 2s
heartbeat_timeout: 30s
queue_timeout: 10m
repos:
  app: {{url: "{repo}"}}
services:
  svc:
    build:
      repos: [app]
      script: |
        echo "start $CONVEYOR_JOB_ID $CONVEYOR_ATTEMPT $(date +%s.%N)" >> "{events}"
        sleep "$(( RANDOM % 3 )).$(( RANDOM % 10 ))"
        echo "end $CONVEYOR_JOB_ID $(date +%s.%N)" >> "{events}"
    deploy: {{script: "true"}}
envs:
  dev: {{}}
workflows:
  soak: {{env: dev, services: [svc], parallel: true}}
roles:
  admin: {{permissions: [task:view, task:create, task:restart, task:cancel], workflows: ["*"]}}
"""
BODY = {
    "workflow_name": "soak",
    "env_name": "dev",
    "targets": [{"name": "svc", "build": {"repos": []}}],
}
TERMINAL = ("passed", "failed", "timeout", "cancelled")


class Soak:
    def __init__(self, home: Path, workers: int) -> None:
        self.home = home
        self.pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="conveyor-soak-pg-")))
        self.redis = PrivateRedis(home / "redis")
        self.port = free_port()
        self.events = home / "events"
        self.config = home / "conveyor.yaml"
        self.worker_count = workers
        self.workers: list[subprocess.Popen[bytes]] = []
        self.faults: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.chaos_victims: set[int] = set()
        self.unplanned_exits: Counter[int] = Counter()  # exit code -> how many

    def prepare(self) -> str:
        repo = self.home / "repo"
        repo.mkdir()
        env = {**os.environ, "GIT_AUTHOR_NAME": "s", "GIT_AUTHOR_EMAIL": "s@s",
               "GIT_COMMITTER_NAME": "s", "GIT_COMMITTER_EMAIL": "s@s"}  # fmt: skip
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, env=env, check=True)
        subprocess.run(
            ["git", "commit", "-q", "--allow-empty", "-m", "x"], cwd=repo, env=env, check=True
        )
        self.pg.start()
        self.redis.start()
        self.config.write_text(
            CONFIG.format(
                port=self.port,
                database_url=self.pg.url,
                broker_url=self.redis.url,
                data=self.home / "data",
                repo=repo,
                events=self.events,
            )
        )
        container = build_container(load_config(self.config))
        migrate.upgrade(container.db)
        token, _ = container.tokens.issue("soak", ["admin"], None)
        container.db.dispose()
        return token

    def start_worker(self) -> None:
        log = (self.home / f"worker-{len(self.workers)}.log").open("wb")
        argv = ["worker", "-c", str(self.config), "--concurrency", "4"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *argv],
            env={k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(proc)

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def supervise(self, until: float) -> None:
        """What systemd's Restart=always does: a worker that exits on its own (not by the
        chaos) is started again; its exit code is counted."""
        while time.monotonic() < until:
            time.sleep(2)
            with self.lock:
                for w in self.workers:
                    code = w.poll()
                    if code is not None and w.pid not in self.chaos_victims:
                        self.chaos_victims.add(w.pid)  # counted once
                        self.unplanned_exits[code] += 1
                        print(f"supervisor: worker {w.pid} exited with {code}; restarting")
                        self.start_worker()

    def chaos(self, until: float, rng: random.Random, every: tuple[float, float]) -> None:
        while time.monotonic() < until:
            time.sleep(rng.uniform(*every))
            if time.monotonic() >= until:
                return
            fault = rng.choice(["postgres", "redis", "kill -9 worker", "stop worker now"])
            with self.lock:
                self.faults[fault] += 1
            print(f"chaos: {fault}", flush=True)
            if fault == "postgres":
                self.pg.stop()
                time.sleep(rng.uniform(3, 10))
                self.pg.start()
            elif fault == "redis":
                self.redis.stop()
                time.sleep(rng.uniform(3, 10))
                self.redis.start()
            else:
                with self.lock:
                    victim = rng.choice(self.live_workers())
                    self.chaos_victims.add(victim.pid)
                if fault == "kill -9 worker":
                    victim.send_signal(signal.SIGKILL)
                else:
                    victim.send_signal(signal.SIGTERM)
                    victim.send_signal(signal.SIGTERM)
                victim.wait(timeout=60)
                with self.lock:
                    self.start_worker()

    def orphans(self) -> list[str]:
        """Processes of this soak's jobs still alive (their environment names the config's
        data directory as their workspace root)."""
        marker = str(self.home / "data" / "workspaces").encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "environ").read_bytes():
                        found.append(entry.name)
                except OSError:
                    continue
        return found

    def stop_all(self) -> None:
        for w in self.live_workers():
            w.send_signal(signal.SIGQUIT)
        for w in self.workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
        self.redis.stop()
        self.pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between creates")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drain-minutes", type=float, default=15, help="for tasks to end")
    parser.add_argument("--keep", action="store_true", help="keep the soak's directory")
    parser.add_argument(
        "--chaos-every", type=float, nargs=2, default=(60.0, 120.0), metavar=("MIN", "MAX")
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    home = Path(tempfile.mkdtemp(prefix="conveyor-soak-"))
    soak = Soak(home, args.workers)
    token = soak.prepare()
    headers = {"Authorization": f"Bearer {token}"}
    serve = ["serve", "-c", str(soak.config), "--port", str(soak.port), "--no-access-log"]
    server = start_conveyor(serve, home / "server.log")
    url = f"http://127.0.0.1:{soak.port}"
    try:
        wait_healthy(url, server)
        for _ in range(args.workers):
            soak.start_worker()
        until = time.monotonic() + args.minutes * 60
        chaos = threading.Thread(
            target=soak.chaos, args=(until, rng, tuple(args.chaos_every)), daemon=True
        )
        chaos.start()
        supervisor = threading.Thread(target=soak.supervise, args=(until + 20 * 60,), daemon=True)
        supervisor.start()
        created: list[int] = []
        refused: Counter[int] = Counter()
        while time.monotonic() < until:
            try:
                r = httpx.post(
                    f"{url}/api/directory/workflowTask/create",
                    json=BODY,
                    headers=headers,
                    timeout=30,
                )
                if r.status_code == 200:
                    created.append(r.json()["task_id"])
                else:
                    refused[r.status_code] += 1
            except httpx.HTTPError:
                refused[0] += 1
            time.sleep(args.every)
        chaos.join()
        print(f"created {len(created)}; waiting for every task to end", flush=True)
        deadline = time.monotonic() + args.drain_minutes * 60
        statuses: dict[int, dict[str, object]] = {}
        while time.monotonic() < deadline:
            pending = [t for t in created if statuses.get(t, {}).get("status") not in TERMINAL]
            if not pending:
                break
            for t in pending:
                try:
                    r = httpx.get(
                        f"{url}/api/workflows/soak/tasks/{t}", headers=headers, timeout=30
                    )
                    if r.status_code == 200:
                        statuses[t] = r.json()
                except httpx.HTTPError:
                    pass
            time.sleep(2)
        report(soak, created, statuses, refused, args)
    finally:
        stop([server])
        soak.stop_all()


def report(soak: Soak, created: list[int], statuses: dict[int, dict[str, object]],
           refused: Counter[int], args: argparse.Namespace) -> None:  # fmt: skip
    by_status = Counter(str(s.get("status")) for s in statuses.values())
    stuck = [t for t in created if statuses.get(t, {}).get("status") not in TERMINAL]
    reasons: Counter[str] = Counter()
    unexplained = 0
    for s in statuses.values():
        jobs: list[dict[str, str]] = s.get("jobs", [])  # type: ignore[assignment]
        for job in jobs:
            if job["status"] == "failed":
                detail = job["detail"] or ""
                reasons[detail.split(";")[0]] += 1
                unexplained += not detail
    lines = soak.events.read_text().splitlines() if soak.events.exists() else []
    starts = Counter(line.split()[1] for line in lines if line.startswith("start"))
    twice = [job for job, n in starts.items() if n > 1]
    orphans = soak.orphans()
    result = {
        "minutes": args.minutes,
        "tasks created": len(created),
        "creates refused (status: count)": dict(refused),
        "statuses": dict(by_status),
        "stuck": len(stuck),
        "jobs run twice": len(twice),
        "orphan processes": len(orphans),
        "failed jobs without a reason": unexplained,
        "failure reasons": dict(reasons),
        "faults injected": dict(soak.faults),
        "workers that exited on their own (exit code: count)": dict(soak.unplanned_exits),
    }
    print(json.dumps(result, indent=2), flush=True)
    for t in stuck[:5]:
        print("stuck:", t, json.dumps(statuses.get(t, {}).get("jobs")), flush=True)
    print("soak directory:", soak.home, flush=True)


if __name__ == "__main__":
    main()
