"""Conveyor beside Buildbot 4.3.0, the Python CI users would pick instead, on the same
trivial work in one run: the same bare repository, a build step that stamps the time, a
deploy step, 8 builds at once, SQLite for both (../shared/peers/buildbot/README.md).
One checkout per task, as Buildbot's one clone per build and the floor's one clone: the
deploy says `checkout: false` (`--deploy-checkout`: it checks out too, as runs before
2026-11-30 08:50 did).

Rounds alternate (Buildbot, then Conveyor, then again) so both see the same machine:

- trigger -> first step: the trigger's answer read -> the build step's `date +%s.%N`;
- end to end: before the trigger -> the task seen ended. Buildbot has no way to wait for
  a build's end, so its client polls every 50 ms; Conveyor's asks `?wait=60`, as
  `conveyor task wait` does. Conveyor polled every 50 ms too is reported beside it;
- throughput: N tasks created back to back -> all ended;
- the floor: the same work with no service at all (a plain script clones, runs the two
  steps and removes the clone, 8 at a time) 500 times, beside Conveyor's 500 tasks;
- server RSS before and at its peak (VmHWM); Buildbot's 8 worker processes too;
- where the throughput tasks' time went in Conveyor, segment by segment (timeline.py).

    cd bench && ../.venv/bin/python peer_buildbot.py            # 50 / 20 / 200, 2 rounds
    cd bench && ../.venv/bin/python peer_buildbot.py --quick    # 10 / 5 / 40, 1 round
    cd bench && ../.venv/bin/python peer_buildbot.py --dir /dev/shm  # Conveyor, floor on tmpfs
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
from serving import free_port, pct, rss_mb, serve_with_token, stop
from timeline import medians, segments

from conveyor.executors.spread_dirs import spread_subdirectories

PEER = Path(__file__).resolve().parents[1].parent / "shared" / "peers" / "buildbot"
# Where the peer's setup.sh puts its repository and workers (fixed paths of that harness).
REPO = "/tmp/bbrepo.git"  # noqa: S108 - both build from it
WORKERS = Path("/tmp/bbworkers")  # noqa: S108
CONFIG = """
public_url: http://127.0.0.1:{port}
database_url: sqlite:///{home}/conveyor.db
data_dir: {home}/data
max_parallel_tasks: 8
max_parallel_jobs: 8
repos:
  app: {{url: "{repo}", default_branch: main}}
services:
  svc:
    build:
      repos: [app]
      variables: {{STAMP: none}}
      script: date +%s.%N > "{stamps}/$STAMP" && true
    deploy: {{script: "true", checkout: {deploy_checkout}}}
envs:
  dev: {{}}
workflows:
  wf: {{env: dev, services: [svc], parallel: true}}
roles:
  admin: {{permissions: [task:view, task:create, task:restart, task:cancel], workflows: ["*"]}}
"""
DONE = ("passed", "failed", "timeout", "cancelled")


def wait_for(path: Path, timeout_s: float = 60) -> float:
    """The time written in `path` by the build step, once it is there."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            text = path.read_text().strip()
            if text:
                return float(text)
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    raise SystemExit(f"{path} never appeared")


class Conveyor:
    def __init__(self, home: Path, poll_s: float, deploy_checkout: bool = False) -> None:
        self.home, self.poll_s = home, poll_s
        self.stamps = home / "stamps"
        self.stamps.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = home / "conveyor.yaml"
        text = CONFIG.format(port=port, home=home, repo=REPO, stamps=self.stamps,
                             deploy_checkout=str(deploy_checkout).lower())  # fmt: skip
        config.write_text(text)
        self.proc, self.url, token = serve_with_token(config, port, home / "server.log")
        self.api = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.rss_before = rss_mb(self.proc.pid)

    def close(self) -> dict[str, float]:
        memory = {"server_rss_before_mb": self.rss_before,
                  "server_vmhwm_mb": rss_mb(self.proc.pid, "VmHWM")}  # fmt: skip
        self.api.close()
        stop([self.proc])
        return memory

    def create(self, stamp: str) -> int:
        body = {"workflow_name": "wf", "env_name": "dev",
                "targets": [{"name": "svc", "build": {"repos": []},
                             "envs": [{"key": "STAMP", "value": stamp}]}]}  # fmt: skip
        r = self.api.post("/api/directory/workflowTask/create", json=body)
        task_id: int = r.raise_for_status().json()["task_id"]
        return task_id

    def status(self, task_id: int) -> str:
        status: str = self.api.get(f"/api/workflows/wf/tasks/{task_id}").json()["status"]
        return status

    def wait_done(self, task_id: int) -> str:
        while (status := self.status(task_id)) not in DONE:
            time.sleep(self.poll_s)
        return status

    def wait_end(self, task_id: int) -> str:
        """Held by the server until the task ends (`?wait=`), as a script would wait."""
        while True:
            url = f"/api/workflows/wf/tasks/{task_id}"
            status: str = self.api.get(url, params={"wait": "60"}).json()["status"]
            if status in DONE:
                return status

    def latency(self, n: int) -> list[float]:
        found = []
        for _ in range(n):
            stamp = uuid.uuid4().hex
            task = self.create(stamp)
            answered = time.time()
            found.append((wait_for(self.stamps / stamp) - answered) * 1000)
            self.wait_done(task)
        return found

    def e2e(self, n: int, polled: bool) -> list[float]:
        found = []
        for _ in range(n):
            t0 = time.time()
            task = self.create(uuid.uuid4().hex)
            assert (self.wait_done(task) if polled else self.wait_end(task)) == "passed"
            found.append((time.time() - t0) * 1000)
        return found

    def throughput(self, n: int) -> dict[str, Any]:
        t0 = time.time()
        ids = [self.create(uuid.uuid4().hex) for _ in range(n)]
        submitted = time.time() - t0
        peak = rss_mb(self.proc.pid)
        for task in ids:  # in the order created: most have ended by their turn
            assert self.wait_end(task) == "passed"
        wall = time.time() - t0
        return {"n": n, "submit_s": submitted, "wall_s": wall, "per_s": n / wall,
                "rss_after_submit_mb": peak, "ids": ids}  # fmt: skip

    def timeline(self, ids: list[int]) -> dict[str, float]:
        """Where these tasks' time went (p50 of each segment, ms): timeline.py."""
        return medians(segments(self.home / "server.log", self.home / "conveyor.db", ids))


def floor(n: int, parallel: int, home: Path) -> float:
    """Tasks per second of the bare work: clone, the two steps, remove; no service.

    Its clones get what Conveyor's workspaces get: a directory marked for ext4 to spread
    them apart (ADR 0019). Without it, on this machine's journal-less ext4, the floor
    measured how many files had been deleted in the minutes before it: 71 to 155
    tasks/s in runs a minute apart, against 137 to 152 with it."""
    if not spread_subdirectories(home):
        print(f"note: {home} could not be spread (not ext2/3/4): the floor as it comes")
    stamps = home / "floor-stamps"
    stamps.mkdir(parents=True, exist_ok=True)
    script = (
        'git clone -q "$1" "$2" && (cd "$2" && bash -c \'date +%s.%N > "$0" && true\' "$3") '
        '&& bash -c true; rm -rf "$2"'
    )

    def one(i: int) -> None:
        argv = ["sh", "-c", script, "floor", REPO, str(home / f"floor-{i}"), str(stamps / str(i))]
        subprocess.run(argv, check=True)

    os.sync()  # see main()
    t0 = time.time()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(n)))
    return n / (time.time() - t0)


def buildbot_round(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    env = {**os.environ, "BB_NWORKERS": "8", "BB_GITMODE": "full"}
    subprocess.run([str(PEER / "setup.sh")], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(PEER / "ctl.sh"), "start"], env=env, check=True)
    try:
        subprocess.run(
            ["python3", str(PEER / "bench.py"), "--phases", "latency,e2e,throughput",
             "--n-latency", str(args.n_latency), "--n-e2e", str(args.n_e2e),
             "--n-throughput", str(args.n_throughput), "--e2e-poll-ms", str(args.poll_ms),
             "--out", str(out)],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        workers = sum(rss_mb(int(p.read_text())) for p in WORKERS.glob("*/twistd.pid"))
    finally:
        subprocess.run([str(PEER / "ctl.sh"), "stop"], env=env, check=True)
    found: dict[str, Any] = json.loads(out.read_text())
    found["workers_rss_mb"] = workers
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10 / 5 / 40, one round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--n-latency", type=int, default=50)
    parser.add_argument("--n-e2e", type=int, default=20)
    parser.add_argument("--n-throughput", type=int, default=200)
    parser.add_argument("--poll-ms", type=float, default=50, help="end-to-end poll, both")
    parser.add_argument("--n-floor", type=int, default=500)
    parser.add_argument(
        "--deploy-checkout", action="store_true", help="the deploy checks out too: 2 a task"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where Conveyor's and the floor's files go (default: the temp dir); "
        "/dev/shm takes the file system's churn out of the comparison",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.n_latency, args.n_e2e, args.n_throughput = 1, 10, 5, 40
        args.n_floor = 100
    home = Path(tempfile.mkdtemp(prefix="conveyor-bench-peer-", dir=args.dir))
    # Buildbot's client reports each phase's median and p99; Conveyor's, every sample.
    bb: dict[str, list[float]] = {k: [] for k in ("latency", "latency99", "e2e", "e2e99",
                                                  "tp", "rss", "wrss")}  # fmt: skip
    cv: dict[str, list[float]] = {"latency": [], "e2e": [], "e2e_polled": [], "tp": [],
                                  "rss": [], "floor_tp": [], "floor": []}  # fmt: skip
    timelines: list[dict[str, float]] = []
    try:
        for r in range(args.rounds):
            # Before each side's work and each throughput: what the last one left dirty
            # (its deleted clones, workspaces and logs) is written out first, so a
            # measure does not absorb the write-out of the one before (as distributed.py).
            os.sync()
            found = buildbot_round(args, home / f"bb{r}.json")
            for key, got in (("latency", found["latency"]["trigger_latency"]),
                             ("e2e", found["e2e"]["e2e"])):  # fmt: skip
                bb[key].append(got["median_ms"])
                bb[f"{key}99"].append(got["p99_ms"])
            bb["tp"].append(found["throughput"]["builds_per_s"])
            bb["rss"].append(found["throughput"]["master_vmhwm_mb"])
            bb["wrss"].append(found["workers_rss_mb"])

            conveyor = Conveyor(home / f"cv{r}", args.poll_ms / 1000, args.deploy_checkout)
            try:
                cv["latency"] += conveyor.latency(args.n_latency)
                cv["e2e"] += conveyor.e2e(args.n_e2e, polled=False)
                cv["e2e_polled"] += conveyor.e2e(args.n_e2e, polled=True)
                os.sync()
                run = conveyor.throughput(args.n_throughput)
                cv["tp"].append(run["per_s"])
                timelines.append(conveyor.timeline(run["ids"]))
                os.sync()
                cv["floor_tp"].append(conveyor.throughput(args.n_floor)["per_s"])
            finally:
                cv["rss"].append(conveyor.close()["server_vmhwm_mb"])
            cv["floor"].append(floor(args.n_floor, 8, home / f"floor{r}"))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    report(args, bb, cv, timelines)


def report(
    args: argparse.Namespace,
    bb: dict[str, list[float]],
    cv: dict[str, list[float]],
    timelines: list[dict[str, float]],
) -> None:
    def row(name: str, b: float, c: float, unit: str, lower_better: bool = True) -> str:
        ratio = b / c if lower_better else c / b
        # Two decimals: a ratio printed as 30.0 may be 29.96, on the wrong side of a target.
        return f"| {name} | {b:.2f} {unit} | {c:.1f} {unit} | **{ratio:.2f}x** |"

    checkouts = 2 if args.deploy_checkout else 1
    print(
        f"# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"{args.rounds} rounds, interleaved; Conveyor: {checkouts} checkout(s) a task; "
        f"Conveyor's and the floor's files in {args.dir or tempfile.gettempdir()}"
    )
    print("| measure | Buildbot 4.3.0 | Conveyor | Conveyor is |")
    print("|---|---:|---:|---:|")
    for name, key in (("trigger → first step", "latency"), ("end to end", "e2e")):
        print(row(f"{name}, p50", statistics.median(bb[key]), statistics.median(cv[key]), "ms"))
        print(row(f"{name}, p99", max(bb[f"{key}99"]), pct(cv[key], 99), "ms"))
    for label, pick in (("p50", statistics.median), ("p99", lambda v: pct(v, 99))):
        b = statistics.median(bb["e2e"]) if label == "p50" else max(bb["e2e99"])
        print(row(f"end to end, both polled every {args.poll_ms:g} ms, {label}", b,
                  pick(cv["e2e_polled"]), "ms"))  # fmt: skip
    print(row(f"{args.n_throughput} tasks back to back", statistics.median(bb["tp"]),
              statistics.median(cv["tp"]), "tasks/s", lower_better=False))  # fmt: skip
    fl, cf = statistics.median(cv["floor"]), statistics.median(cv["floor_tp"])
    print(f"| {args.n_floor} tasks: the bare work (no service) vs Conveyor | {fl:.1f} tasks/s | "
          f"{cf:.1f} tasks/s | **{cf / fl:.2f}x the floor** |")  # fmt: skip
    print(f"| server RSS peak | {max(bb['rss']):.0f} MB | {max(cv['rss']):.0f} MB | |")
    print(f"| worker processes' RSS | {max(bb['wrss']):.0f} MB (8 workers) | "
          "none: jobs are the server's children | |")  # fmt: skip
    print(f"\nWhere a task's time went in Conveyor's {args.n_throughput} tasks (p50, ms; "
          "each round):")  # fmt: skip
    print("| segment | " + " | ".join(f"round {r + 1}" for r in range(len(timelines))) + " |")
    print("|---|" + "---:|" * len(timelines))
    for name in timelines[0] if timelines else ():
        print(f"| {name} | " + " | ".join(f"{t.get(name, 0):.1f}" for t in timelines) + " |")


if __name__ == "__main__":
    main()
