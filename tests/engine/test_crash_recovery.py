"""kill -9 of the server while tasks are queued or running, then a restart."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from conveyor.settings import load_config
from conveyor.wiring import build_container
from tests.conftest import RepoFactory, alive
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
envs:
  dev: {{}}
workflows:
  wf: {{env: dev, services: [svc], parallel: true}}
roles:
  admin: {{permissions: [task:view, task:create, task:restart, task:cancel], workflows: ["*"]}}
"""


@pytest.fixture
def server(make_repo: RepoFactory, tmp_path: Path, empty_database_url: str) -> Iterator[Server]:
    app = make_repo("app")
    port = free_port()
    config = tmp_path / "conveyor.yaml"
    config.write_text(
        CONFIG.format(
            port=port,
            database_url=empty_database_url,
            app=app.url,
            events=tmp_path / "events",
            pids=tmp_path / "pids",
            slow=tmp_path / "slow",
        )
    )
    srv = Server(config, port, tmp_path / "server.log")
    yield srv
    srv.stop()


def test_kill_9_with_tasks_queued_and_running_loses_nothing(server: Server, tmp_path: Path) -> None:
    # Jobs running when the server dies sleep "forever": only the new server can end them.
    (tmp_path / "slow").touch()
    server.start()
    container = build_container(load_config(server.config))
    token, _ = container.tokens.issue("alice", ["admin"], None)
    container.db.dispose()
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "workflow_name": "wf",
        "env_name": "dev",
        "targets": [{"name": "svc", "build": {"repos": []}}],
    }
    for _ in range(10):
        assert (
            httpx.post(
                f"{server.url}/api/directory/workflowTask/create", json=body, headers=headers
            ).status_code
            == 200
        )
    pids_file = tmp_path / "pids"
    deadline = time.monotonic() + 20
    while not (pids_file.exists() and len(pids_file.read_text().split()) >= 4):
        assert time.monotonic() < deadline, "jobs never started"
        time.sleep(0.02)
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
