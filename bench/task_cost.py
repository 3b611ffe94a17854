"""What one trivial task costs the server, counted rather than timed (stable on a noisy
machine): write transactions, read connections and processes started, per task, over N
tasks of a one-service workflow (a `true` build and deploy) run by the local executor;
and the CPU time it takes, by part: the creates (this script's main thread, the work of
the API's create without HTTP), the scheduler's thread, the job runners' threads.

    cd bench && ../.venv/bin/python task_cost.py [--tasks 40]
"""

import argparse
import collections
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from conveyor.config_file import parse_config
from conveyor.domain.principals import Principal
from conveyor.services.tasks import CreateRequest, TargetRequest
from conveyor.wiring import Container, build_container

CONFIG = """
database_url: sqlite:///{home}/conveyor.db
data_dir: {home}/data
max_parallel_tasks: 8
repos: {{app: {{url: "{repo}"}}}}
services: {{svc: {{build: {{repos: [app], script: "true"}}, deploy: {{script: "true"}}}}}}
envs: {{dev: {{}}}}
workflows: {{wf: {{env: dev, services: [svc], parallel: true}}}}
roles: {{admin: {{permissions: [task:view, task:create], workflows: ["*"]}}}}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40)
    n = parser.parse_args().tasks
    home = Path(tempfile.mkdtemp(prefix="conveyor-bench-cost-"))
    try:
        measure(home, n)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def measure(home: Path, n: int) -> None:
    """`n` tasks through a container in this process, with their home under `home`."""
    repo = home / "app"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@b",
         "commit", "-q", "--allow-empty", "-m", "initial"], check=True,
    )  # fmt: skip
    container = build_container(parse_config(CONFIG.format(home=home, repo=repo)), run_jobs=True)
    container.migrate()
    counts: collections.Counter[str] = collections.Counter()
    sa.event.listen(container.db.engine, "checkout", lambda *_: counts.update(["read"]))
    real = subprocess.Popen.__init__

    def counting(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        counts.update([f"process {args[0] if isinstance(args, list) else args}"])
        real(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = counting  # type: ignore[method-assign]
    container.start()
    try:
        count(container, counts, n)
    finally:
        container.stop()
        subprocess.Popen.__init__ = real  # type: ignore[method-assign]


def count(container: Container, counts: collections.Counter[str], n: int) -> None:
    """Run `n` tasks through the started `container` and print what they cost."""
    process_cpu, threads_before = sum(os.times()[:2]), thread_cpu()
    writes_before = container.db.writes_begun
    principal = Principal("bench", ("admin",))
    for _ in range(n):
        container.tasks.create(principal, CreateRequest("wf", "dev", (TargetRequest("svc", ()),)))
    deadline = time.monotonic() + 120
    open_tasks = sa.text("SELECT count(*) FROM tasks WHERE state NOT IN ('passed', 'failed')")
    while time.monotonic() < deadline:
        with container.db.read() as conn:
            if conn.execute(open_tasks).scalar() == 0:
                break
        time.sleep(0.05)
    cpu = {k: v - threads_before.get(k, 0.0) for k, v in thread_cpu().items()}
    counts["write"] = container.db.writes_begun - writes_before
    process_cpu = sum(os.times()[:2]) - process_cpu
    print(f"# {n} trivial tasks (one service, a `true` build and deploy), local executor")
    for name, count in sorted(counts.items()):
        print(f"{name}: {count / n:.1f} per task")
    print(f"CPU, the whole process: {process_cpu * 1000 / n:.1f} ms per task")
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"CPU, {name}: {seconds * 1000 / n:.1f} ms per task")


def thread_cpu() -> dict[str, float]:
    """CPU seconds of the live threads so far, by name without the pool's number."""
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
        except OSError:  # ended meanwhile
            continue
        name = re.sub(r"_\d+$", "", thread.name)
        found[name] = found.get(name, 0.0) + time.clock_gettime(clock)
    return found


if __name__ == "__main__":
    main()
