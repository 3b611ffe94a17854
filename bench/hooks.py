"""GitLab hook -> task created -> first `pending` status delivered, beside the same
through the API's create, in one run against a real `conveyor serve`.

A fake GitLab in this process answers the statuses endpoint and stamps when each
task's first `pending` arrives. Hooks (each a push of its own commit) and API creates
alternate, one at a time, so both see the same machine.

    .venv/bin/python bench/hooks.py [--tasks 200]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2 as httpx
from serving import free_port, pct, serve_with_token, stop

SECRET = "bench-hook-secret-0123"
CONFIG = """
public_url: http://127.0.0.1:{port}
database_url: sqlite:///conveyor.db
data_dir: data
max_parallel_tasks: 4
gitlab: {{url: "{gitlab}", token: "bench-token-0123456", webhook_secret: "{secret}"}}
repos:
  app: {{url: "{repo}", gitlab_project: bench/app}}
services:
  svc:
    build: {{repos: [app], script: "true"}}
    deploy: {{script: "true"}}
envs:
  dev: {{}}
workflows:
  wf:
    env: dev
    services: [svc]
    parallel: true
    triggers: [{{event: push, repo: app, branches: [main]}}]
roles:
  admin: {{permissions: [task:view, task:create], workflows: ["*"]}}
"""


class FakeGitlab:
    """Stamps the arrival of the first status of each task (by its target_url): `pending`,
    or `running` if the task started before the first post."""

    def __init__(self) -> None:
        self.pending: dict[str, float] = {}
        self.arrived = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                now = time.perf_counter()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.arrived:
                    # The first status GitLab hears of the task: `pending`, or `running`
                    # when the task started before the sender's first post (it sends a
                    # commit's newest state).
                    outer.pending.setdefault(body["target_url"], now)
                    outer.arrived.notify_all()
                self.send_response(201)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_pending(self, target_url: str) -> float:
        with self.arrived:
            if not self.arrived.wait_for(lambda: target_url in self.pending, timeout=30):
                raise SystemExit(f"no status for {target_url}")
            return self.pending[target_url]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path: Path, commits: int, branches: int) -> list[str]:
    """A repository with `commits` commits on main, then `branches` branches api-<i>,
    each at a commit of its own after those (fast-import: one process). Every task of
    the run builds a commit of its own: statuses of one commit are one GitLab status,
    which would coalesce across tasks."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    stream = []
    for i in range(commits + branches):
        message = f"commit {i}"
        ref = "refs/heads/main" if i < commits else f"refs/heads/api-{i - commits}"
        stream.append(
            f"commit {ref}\nmark :{i + 1}\n"
            f"committer Bench <bench@example.com> {1_700_000_000 + i} +0000\n"
            f"data {len(message)}\n{message}\n"
            + (f"from :{i}\n" if i else "")
            + f"M 644 inline file.txt\ndata {len(str(i)) + 1}\n{i}\n\n"
        )
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=path, input="".join(stream), text=True, check=True
    )
    return git(path, "rev-list", "--reverse", "main").split()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=200, help="hooks, and as many creates")
    args = parser.parse_args()
    gitlab = FakeGitlab()
    home = Path(tempfile.mkdtemp(prefix="conveyor-bench-hooks-"))
    try:
        shas = make_repo(home / "app", args.tasks, args.tasks)
        port = free_port()
        config = home / "conveyor.yaml"
        config.write_text(
            CONFIG.format(port=port, gitlab=gitlab.url, secret=SECRET, repo=home / "app")
        )
        proc, url, token = serve_with_token(config, port, home / "log")
        client = httpx.Client(timeout=30)
        auth = {"Authorization": f"Bearer {token}"}
        hook_created, hook_pending, api_created, api_pending = [], [], [], []
        try:
            for i, sha in enumerate(shas):
                branch = {"repo_name": "app", "branch": f"api-{i}"}
                create_body = {
                    "workflow_name": "wf",
                    "env_name": "dev",
                    "targets": [{"name": "svc", "build": {"repos": [branch]}}],
                }
                body = {
                    "object_kind": "push",
                    "ref": "refs/heads/main",
                    "before": "0" * 40,
                    "after": sha,
                    "checkout_sha": sha,
                    "project_id": 1,
                    "project": {"id": 1, "path_with_namespace": "bench/app"},
                }
                headers = {
                    "X-Gitlab-Event": "Push Hook",
                    "X-Gitlab-Token": SECRET,
                    "X-Gitlab-Event-UUID": str(uuid.uuid4()),
                }
                t0 = time.perf_counter()
                r = client.post(f"{url}/api/hooks/gitlab", json=body, headers=headers)
                t1 = time.perf_counter()
                (task,) = r.json()["tasks"]
                target = f"{url}/workflows/wf/tasks/{task['task_id']}"
                hook_created.append(t1 - t0)
                hook_pending.append(gitlab.wait_pending(target) - t0)

                t0 = time.perf_counter()
                r = client.post(
                    f"{url}/api/directory/workflowTask/create", json=create_body, headers=auth
                )
                t1 = time.perf_counter()
                target = f"{url}/workflows/wf/tasks/{r.json()['task_id']}"
                api_created.append(t1 - t0)
                api_pending.append(gitlab.wait_pending(target) - t0)
        finally:
            stop([proc])
        ms = 1000.0
        print(f"# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
        print(f"# {args.tasks} hooks and {args.tasks} API creates, alternating, one at a time")
        print("| path | p50 ms | p99 ms |")
        print("|---|---:|---:|")
        for name, values in (
            ("hook received -> task created (answer)", hook_created),
            ("hook received -> first `pending` delivered", hook_pending),
            ("API create -> task created (answer)", api_created),
            ("API create -> first `pending` delivered", api_pending),
        ):
            print(f"| {name} | {pct(values, 50) * ms:.1f} | {pct(values, 99) * ms:.1f} |")
        ratio = statistics.median(hook_pending) / statistics.median(api_pending)
        print(f"hook / API, to the first pending (medians): {ratio:.2f}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
