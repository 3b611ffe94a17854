"""A job that prints 100 MB streams to its log; the server's memory stays flat."""

import threading
import time
from pathlib import Path

import httpx2 as httpx

from tests.conftest import RepoFactory
from tests.server import Server, free_port

CONFIG = """
public_url: http://127.0.0.1:{port}
database_url: {database_url}
data_dir: data
log_max_bytes: 209715200
repos:
  app: {{url: "{app}"}}
services:
  chatty:
    build:
      repos: [app]
      # 100 MiB in lines of 1 KiB, as fast as the pipe takes it.
      script: head -c 104857600 /dev/zero | tr '\\\\0' 'x' | fold -w 1023
    deploy: {{script: "true"}}
envs:
  dev: {{secrets: {{TOKEN: not-in-this-output}}}}
workflows:
  wf: {{env: dev, services: [chatty]}}
roles:
  admin: {{permissions: [task:view, task:create], workflows: ["*"]}}
"""


def test_a_100_mb_log_does_not_grow_the_server(
    make_repo: RepoFactory, tmp_path: Path, empty_database_url: str
) -> None:
    port = free_port()
    config = tmp_path / "conveyor.yaml"
    config.write_text(
        CONFIG.format(port=port, database_url=empty_database_url, app=make_repo("app").url)
    )
    server = Server(config, port, tmp_path / "server.log")
    server.start()
    try:
        headers = {"Authorization": f"Bearer {server.issue_token()}"}
        api = f"{server.url}/api/directory/workflowTask"
        # Warm up: one small request, so the baseline includes what serving costs.
        httpx.get(f"{server.url}/healthz")
        baseline = server.rss_kib()
        peak = baseline
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, server.rss_kib())
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        body = {
            "workflow_name": "wf",
            "env_name": "dev",
            "targets": [{"name": "chatty", "build": {"repos": []}}],
        }
        assert httpx.post(f"{api}/create", json=body, headers=headers).status_code == 200
        deadline = time.monotonic() + 120
        while True:
            detail = httpx.get(f"{server.url}/api/workflows/wf/tasks/1", headers=headers).json()
            if detail["status"] in ("passed", "failed"):
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        done.set()
        sampler.join()
        assert detail["status"] == "passed"
        [build] = [j for j in detail["jobs"] if j["stage"] == "build"]
        log = tmp_path / "data" / "logs" / f"{build['id']}.log"
        assert log.stat().st_size > 100 * 2**20
        grown_mib = (peak - baseline) / 1024
        assert grown_mib < 50, f"server RSS grew {grown_mib:.1f} MiB while streaming"
    finally:
        server.stop()
