"""The execution engine, measured through a real `conveyor serve` process.

1. create -> first job process started, over N tasks one at a time (the build script's
   first command stamps the time; the client stamps just before its POST);
2. one trivial task (1 service, `true` build and deploy) end to end, beside the bare
   work it wraps (`git clone` + `bash -c true`, twice) in the same run;
3. many trivial tasks on a parallel workflow with max_parallel_tasks 8: tasks per second.

    .venv/bin/python bench/engine.py [--latency-tasks 200] [--throughput-tasks 500]
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
from serving import free_port, start_conveyor, stop, wait_healthy

from conveyor.config_file import load_config
from conveyor.storage import migrate
from conveyor.wiring import build_container

CONFIG = """
public_url: http://127.0.0.1:{port}
database_url: sqlite:///conveyor.db
data_dir: data
max_parallel_tasks: 8
max_parallel_jobs: 8
repos:
  app: {{url: "{repo}"}}
services:
  stamp:
    build: {{repos: [app], script: 'date +%s.%N > "{marks}/$CONVEYOR_TASK_ID"'}}
    deploy: {{script: "true"}}
  trivial:
    build: {{repos: [app], script: "true"}}
    # The client waits for this file, not by polling the API (which would take the CPU
    # the work needs), then confirms the status once.
    deploy: {{script: ': > "{marks}/$CONVEYOR_TASK_ID.done"'}}
envs:
  dev: {{}}
workflows:
  stamp: {{env: dev, services: [stamp], parallel: true}}
  trivial: {{env: dev, services: [trivial], parallel: true}}
roles:
  admin: {{permissions: [task:view, task:create], workflows: ["*"]}}
"""


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_repo(path: Path) -> None:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for i in range(50):
        (path / f"file{i}.txt").write_text(f"content {i}\n" * 100)
    git(path, "add", ".")
    git(path, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "init")


def bench_home(prefix: str) -> tuple[Path, Path, Path, int, Path]:
    """What a benchmark of the engine starts from: a temp dir (`root`) holding the
    repository its tasks build (`repo`) and the directory their scripts mark (`marks`),
    a free port, and where the config goes."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    repo, marks = root / "repo", root / "marks"
    make_repo(repo)
    marks.mkdir()
    return root, repo, marks, free_port(), root / "conveyor.yaml"


def pct(values: list[float], q: int) -> float:
    return (
        statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0] * 1000
    )


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})

    def create(self, workflow: str, service: str) -> int:
        body = {
            "workflow_name": workflow,
            "env_name": "dev",
            "targets": [{"name": service, "build": {"repos": []}}],
        }
        r = self.http.post("/api/directory/workflowTask/create", json=body)
        r.raise_for_status()
        task_id: int = r.json()["task_id"]
        return task_id

    def status(self, workflow: str, task_id: int) -> str:
        r = self.http.get(f"/api/workflows/{workflow}/tasks/{task_id}")
        status: str = r.json()["status"]
        return status

    def wait(
        self, workflow: str, task_id: int, poll_s: float = 0.002, deadline: float | None = None
    ) -> None:
        """Until the task ended, which must be as passed; by `deadline` (time.monotonic)
        if given."""
        ended = ("passed", "failed", "timeout", "cancelled")
        while (s := self.status(workflow, task_id)) not in ended:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{workflow}#{task_id} still {s}")
            time.sleep(poll_s)
        assert s == "passed", s

    def wait_done(self, marks: Path, task_id: int) -> None:
        """The deploy's done-file, then the API's word that the task passed."""
        done = marks / f"{task_id}.done"
        while not done.exists():
            time.sleep(0.0005)
        self.wait("trivial", task_id, poll_s=0.001)


def bare_work(repo: Path, scratch: Path) -> float:
    t0 = time.perf_counter()
    for step in ("build", "deploy"):
        dest = scratch / step
        subprocess.run(["git", "clone", "-q", "--", str(repo), str(dest)], check=True)
        subprocess.run(["bash", "-c", "true"], cwd=dest, check=True)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(scratch / "build")
    shutil.rmtree(scratch / "deploy")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-tasks", type=int, default=200)
    parser.add_argument("--trivial-runs", type=int, default=30)
    parser.add_argument("--throughput-tasks", type=int, default=500)
    args = parser.parse_args()

    root, repo, marks, port, config = bench_home("conveyor-bench-")
    config.write_text(CONFIG.format(port=port, repo=repo, marks=marks))
    container = build_container(load_config(config))
    migrate.upgrade(container.db)
    token, _ = container.tokens.issue("bench", ["admin"], None)
    container.db.dispose()
    server = start_conveyor(["serve", "-c", str(config), "--port", str(port), "--no-access-log"])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        client = Client(url, token)

        # 1. create -> first job process started
        client.wait("stamp", client.create("stamp", "stamp"))  # warm: mirror made
        latencies = []
        for _ in range(args.latency_tasks):
            t0 = time.time()
            task_id = client.create("stamp", "stamp")
            mark = marks / str(task_id)
            while not (mark.exists() and mark.read_text().strip()):
                time.sleep(0.0005)
            latencies.append(float(mark.read_text()) - t0)
            client.wait("stamp", task_id)
        print(
            f"create -> first job process started: p50 {pct(latencies, 50):.1f} ms, "
            f"p99 {pct(latencies, 99):.1f} ms over {len(latencies)} tasks",
            flush=True,
        )

        # 2. one trivial task end to end, beside the bare work, interleaved
        client.wait("trivial", client.create("trivial", "trivial"))
        scratch = root / "scratch"
        scratch.mkdir()
        ours, bare = [], []
        for _ in range(args.trivial_runs):
            t0 = time.perf_counter()
            client.wait_done(marks, client.create("trivial", "trivial"))
            ours.append(time.perf_counter() - t0)
            bare.append(bare_work(repo, scratch))
        o, b = statistics.median(ours), statistics.median(bare)
        print(
            f"trivial task end to end: median {o * 1000:.1f} ms; bare work {b * 1000:.1f} ms; "
            f"ratio {o / b:.2f}",
            flush=True,
        )

        # 3. throughput on a parallel workflow, max_parallel_tasks 8
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:  # several clients create at once
            ids = list(
                pool.map(
                    lambda _: client.create("trivial", "trivial"), range(args.throughput_tasks)
                )
            )
        created = time.perf_counter() - t0
        for task_id in ids:
            done = marks / f"{task_id}.done"
            while not done.exists():
                time.sleep(0.01)
        total = time.perf_counter() - t0
        statuses = {client.status("trivial", i) for i in ids}
        assert statuses == {"passed"}, statuses
        print(
            f"{len(ids)} trivial tasks: {len(ids) / total:.1f} tasks/s "
            f"({total:.1f} s, of which creating them {created:.1f} s)",
            flush=True,
        )
        cores = os.cpu_count()
        print(f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}")
    finally:
        stop([server])
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
