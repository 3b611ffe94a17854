"""kill -9 of the server while tasks are queued or running, then a restart."""

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.conftest import GitRepo, PgServer, RepoFactory, alive
from tests.engine.test_sandbox import require_bubblewrap
from tests.server import Server, free_port

CONFIG = """
public_url: http://127.0.0.1:{port}
database_url: {database_url}
data_dir: data
max_parallel_tasks: 4
cancel_grace: 1s
repos:
  app: {{url: "{app}"}}
services:
  svc:
    build:
      repos: [app]
      script: |
        echo "start $CONVEYOR_JOB_ID $$" >> "{events}"
        echo $$ >> "{pids}"
        if [ -e "{slow}" ]; then sleep 1000; else sleep 0.2; fi
        echo "end $CONVEYOR_JOB_ID" >> "{events}"
    deploy: {{script: "true"}}
  jailed:
    sandbox: bubblewrap
    build:
      repos: [app]
      script: |
        setsid sleep 3601.{port} < /dev/null > /dev/null 2>&1 &
        exec sleep 3601.{port}
    deploy: {{script: "true"}}
envs:
  dev: {{}}
workflows:
  wf: {{env: dev, services: [svc, jailed], parallel: true}}
roles:
  admin: {{permissions: [task:view, task:create, task:restart, task:cancel], workflows: ["*"]}}
"""


def make_server(app: GitRepo, home: Path, database_url: str) -> Server:
    """A server of its own installation: its own config, database and data_dir."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = home / "conveyor.yaml"
    config.write_text(
        CONFIG.format(
            port=port,
            database_url=database_url,
            app=app.url,
            events=home / "events",
            pids=home / "pids",
            slow=home / "slow",
        )
    )
    return Server(config, port, home / "server.log")


@pytest.fixture
def server(make_repo: RepoFactory, tmp_path: Path, empty_database_url: str) -> Iterator[Server]:
    srv = make_server(make_repo("app"), tmp_path, empty_database_url)
    yield srv
    srv.stop()


def admin_headers(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.issue_token()}"}


BODY = {
    "workflow_name": "wf",
    "env_name": "dev",
    "targets": [{"name": "svc", "build": {"repos": []}}],
}


def start_slow_jobs(
    server: Server, headers: dict[str, str], tasks: int, running: int | None = None
) -> list[int]:
    """`tasks` tasks whose jobs run until stopped; the pids of the scripts that started,
    once `running` (default: all) have."""
    home = server.config.parent
    (home / "slow").touch()
    for _ in range(tasks):
        url = f"{server.url}/api/directory/workflowTask/create"
        assert httpx.post(url, json=BODY, headers=headers).status_code == 200
    pids_file = home / "pids"
    count = tasks if running is None else running
    deadline = time.monotonic() + 20
    while not (pids_file.exists() and len(pids_file.read_text().split()) >= count):
        assert time.monotonic() < deadline, "jobs never started"
        time.sleep(0.02)
    return [int(p) for p in pids_file.read_text().split()]


def test_kill_9_with_tasks_queued_and_running_loses_nothing(server: Server, tmp_path: Path) -> None:
    # Jobs running when the server dies sleep "forever": only the new server can end them.
    server.start()
    headers = admin_headers(server)
    start_slow_jobs(server, headers, tasks=10, running=4)
    pids_file = tmp_path / "pids"
    server.kill()
    (tmp_path / "slow").unlink()
    orphans = [int(p) for p in pids_file.read_text().split()]
    assert all(alive(p) for p in orphans), "the jobs outlive a killed server"

    server.start()

    def detail(task_id: int) -> dict[str, Any]:
        r = httpx.get(f"{server.url}/api/workflows/wf/tasks/{task_id}", headers=headers)
        assert r.status_code == 200
        result: dict[str, Any] = r.json()
        return result

    deadline = time.monotonic() + 60
    while True:
        tasks = [detail(i) for i in range(1, 11)]
        if all(t["status"] in ("passed", "failed") for t in tasks):
            break
        assert time.monotonic() < deadline, [t["status"] for t in tasks]
        time.sleep(0.1)
    # None lost: every task ended; the ones running at the crash failed, the rest passed.
    statuses = [t["status"] for t in tasks]
    interrupted = [t for t in tasks if t["status"] == "failed"]
    assert 1 <= len(interrupted) <= 4
    assert statuses.count("passed") == 10 - len(interrupted)
    for task in interrupted:
        [build] = [j for j in task["jobs"] if j["stage"] == "build"]
        assert build["detail"].startswith("server restarted while the job ran; stopped ")
    # The old server's job processes were stopped by the new one.
    assert [p for p in orphans if alive(p)] == []
    # No job ran twice: each job id started exactly once.
    starts = [
        line.split()[1]
        for line in (tmp_path / "events").read_text().splitlines()
        if line.startswith("start")
    ]
    assert len(starts) == len(set(starts))


def test_a_restarted_server_never_stops_another_installations_jobs(
    make_repo: RepoFactory, tmp_path: Path, pg_server: PgServer | None
) -> None:
    """Two installations on one host, both killed: the one restarted first stops only its
    own orphans; the other's job runs on until its own server comes back."""
    app = make_repo("app")
    urls = [
        pg_server.create() if pg_server else f"sqlite:///{tmp_path / name / 'conveyor.db'}"
        for name in ("a", "b")
    ]
    a, b = (make_server(app, tmp_path / name, url) for name, url in zip("ab", urls, strict=True))
    try:
        a.start()
        b.start()
        a_pids = start_slow_jobs(a, admin_headers(a), 1)
        b_pids = start_slow_jobs(b, admin_headers(b), 1)
        a.kill()
        b.kill()
        assert all(alive(p) for p in a_pids + b_pids)

        b.start()  # reconciles before it answers
        assert [p for p in b_pids if alive(p)] == []
        assert all(alive(p) for p in a_pids), "B stopped a job of installation A"

        a.start()
        assert [p for p in a_pids if alive(p)] == []
        r = httpx.get(f"{a.url}/api/workflows/wf/tasks/1", headers=admin_headers(a))
        [build] = [j for j in r.json()["jobs"] if j["stage"] == "build"]
        assert build["detail"] == (
            # The script and its `sleep`.
            "server restarted while the job ran; stopped 2 leftover processes"
        )
    finally:
        for srv in (a, b):
            srv.stop()
        if pg_server:
            for url in urls:
                pg_server.drop(url)


def _sleeping(tag: str) -> int:
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True)
    return ps.stdout.splitlines().count(f"sleep {tag}")


def test_a_sandboxed_job_ends_at_once_with_its_killed_server(server: Server) -> None:
    """Under bubblewrap nothing waits for the next server: the sandbox dies with its
    runner, every process of the job with it, whatever left the session."""
    require_bubblewrap()
    server.start()
    body = {**BODY, "targets": [{"name": "jailed", "build": {"repos": []}}]}
    url = f"{server.url}/api/directory/workflowTask/create"
    assert httpx.post(url, json=body, headers=admin_headers(server)).status_code == 200
    tag = f"3601.{server.port}"
    deadline = time.monotonic() + 20
    while _sleeping(tag) < 2:
        assert time.monotonic() < deadline, "the sandboxed job never started"
        time.sleep(0.05)
    server.kill()
    deadline = time.monotonic() + 5
    while _sleeping(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sleeping(tag) == 0
