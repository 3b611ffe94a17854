"""A server that really runs jobs: scheduler, local executor, real git and processes."""

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from conveyor.api.app import create_app
from conveyor.config_file import parse_config
from conveyor.domain.jobs import JobRow
from conveyor.executors.paths import RunnerPaths
from conveyor.storage.db import Database
from conveyor.storage.tables import jobs
from conveyor.wiring import Container, build_container
from tests.conftest import GitRepo, RepoFactory

CONFIG = """
public_url: http://conveyor.test
data_dir: {data}
cancel_grace: 1s
repos:
  app: {{url: "{app}"}}
services:
  api: &svc
    build:
      repos: [app]
      timeout: {timeout}
      variables: {{MODE: "", GREETING: hello}}
      outputs: [IMAGE]
      script: |
        echo "$CONVEYOR_JOB_ID $CONVEYOR_STAGE $CONVEYOR_SERVICE" >> "$PIDS/events"
        echo "build $CONVEYOR_SERVICE attempt $CONVEYOR_ATTEMPT token=$TOKEN greeting=$GREETING"
        case "${{MODE:-}}" in
          fail) echo "failing on purpose"; exit 3 ;;
          escape|escape-hang)
            # Every way out of the job's session at once: setsid, a double fork with the
            # output closed, a double fork holding it. None may outlive the job.
            out="$PIDS/$CONVEYOR_TASK_ID.pids"; touch "$out"
            setsid bash -c "echo \\$\\$ >> $out; exec sleep 300" &
            ( setsid bash -c "echo \\$\\$ >> $out; exec sleep 300" </dev/null >/dev/null 2>&1 & )
            ( bash -c "echo \\$\\$ >> $out; exec sleep 300" & ) &
            while [ "$(wc -l < "$out")" -lt 3 ]; do sleep 0.01; done
            if [ "$MODE" = escape-hang ]; then sleep 300; fi ;;
          smuggle)
            # Build outputs must not redirect the deploy or make it run code.
            echo "touch $PIDS/smuggled" > "$PIDS/evil.sh"
            echo "BASH_ENV=$PIDS/evil.sh" >> "$CONVEYOR_OUTPUT"
            echo "NAMESPACE=prod" >> "$CONVEYOR_OUTPUT" ;;
          flaky) test "$CONVEYOR_ATTEMPT" -gt 1 ;;
          sleep)
            if [ "$CONVEYOR_ATTEMPT" -gt 1 ]; then
              # A restart must never overlap the processes of the attempt it replaces.
              # Zombies do not count: dead, only not yet reaped by an init that may never.
              for p in $(cat "$PIDS/$CONVEYOR_TASK_ID.pids"); do
                state=$(cut -d" " -f3 "/proc/$p/stat" 2>/dev/null || echo gone)
                case "$state" in gone|Z) ;; *) echo "old process $p still alive"; exit 9 ;; esac
              done
            else
              (trap '' TERM; sleep 1000) & echo $! >> "$PIDS/$CONVEYOR_TASK_ID.pids"
              echo $$ >> "$PIDS/$CONVEYOR_TASK_ID.pids"
              sleep 1000
            fi ;;
        esac
        echo "IMAGE=reg/$CONVEYOR_SERVICE:$CONVEYOR_TASK_ID" >> "$CONVEYOR_OUTPUT"
    deploy:
      script: |
        echo "$CONVEYOR_JOB_ID $CONVEYOR_STAGE $CONVEYOR_SERVICE" >> "$PIDS/events"
        echo "deploy $CONVEYOR_SERVICE $IMAGE to $NAMESPACE"
        echo "deploy sees greeting=${{GREETING-unset}}"
  web: *svc
  gpu:
    build: {{repos: [app], script: "echo built on the gpu queue", queue: "{gpu_queue}"}}
    deploy: {{script: "true"}}
  jail:
    # A sandboxed job tries what it must not be able to do; its log says what happened.
    sandbox: bubblewrap
    network: false
    build:
      repos: [app]
      script: |
        echo "uid=$(id -u) workspace=$(ls "$CONVEYOR_WORKSPACE" | tr '\\n' ' ')"
        cat "{config}" || true
        echo "workspaces: $(ls "{data}/workspaces" | tr '\\n' ' ')"
        kill -0 {server_pid} || true
        (exec 3<>/dev/tcp/127.0.0.1/{db_port}) || true
        setsid env -i sleep 3600.5 < /dev/null > /dev/null 2>&1 &
    deploy: {{script: "true"}}
envs:
  dev: {{vars: {{NAMESPACE: dev, PIDS: "{pids}"}}, secrets: {{TOKEN: hunter2-secret}}}}
workflows:
  serial: {{env: dev, services: [api, web, gpu]}}
  parallel: {{env: dev, services: [api, web, gpu, jail], parallel: true}}
roles:
  admin: {{permissions: [task:view, task:create, task:restart, task:cancel], workflows: ["*"]}}
  creator: {{permissions: [task:create], workflows: ["*"]}}
  viewer: {{permissions: [task:view], workflows: ["*"]}}
"""

TERMINAL = {"passed", "failed", "timeout", "cancelled"}


@dataclass
class Engine:
    client: TestClient
    container: Container
    headers: dict[str, str]
    repo: GitRepo
    pids: Path
    paths: RunnerPaths
    config_path: Path

    def create(self, workflow: str = "serial", **modes: str) -> int:
        """A task building each service named in `modes` with that MODE ('' = plain)."""
        targets = [
            {
                "name": service,
                "build": {"repos": []},
                "envs": [{"key": "MODE", "value": mode}] if mode else [],
            }
            for service, mode in modes.items()
        ]
        body = {"workflow_name": workflow, "env_name": "dev", "targets": targets}
        r = self.client.post("/api/directory/workflowTask/create", json=body, headers=self.headers)
        assert r.status_code == 200, r.text
        task_id: int = r.json()["task_id"]
        return task_id

    def item(self, task_id: int, workflow: str = "serial") -> dict[str, Any]:
        r = self.client.get(
            "/api/directory/workflowTask",
            params={"commitId": self.repo.head("main"), "limit": "1000"},
            headers=self.headers,
        )
        [found] = [
            i for i in r.json() if i["task_id"] == task_id and i["workflow_name"] == workflow
        ]
        return found  # type: ignore[no-any-return]

    def wait(
        self,
        task_id: int,
        statuses: set[str] = TERMINAL,
        workflow: str = "serial",
        timeout: float = 30,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            item = self.item(task_id, workflow)
            if item["status"] in statuses:
                return item
            if time.monotonic() > deadline:
                raise AssertionError(f"task {workflow}#{task_id} stuck at {item['status']}")
            time.sleep(0.02)

    def act(self, action: str, task_id: int, workflow: str = "serial") -> int:
        r = self.client.post(
            f"/api/directory/workflowTask/id/{task_id}/pipelines/{workflow}/{action}",
            headers=self.headers,
        )
        return r.status_code

    def jobs(self, task_id: int, workflow: str = "serial") -> list[JobRow]:
        with self.container.db.read() as conn:
            pk = conn.execute(
                sa.text("SELECT id FROM tasks WHERE workflow_name = :w AND task_id = :t"),
                {"w": workflow, "t": task_id},
            ).scalar_one()
        rows = []
        with self.container.db.read() as conn:
            for r in conn.execute(sa.select(jobs).where(jobs.c.task_pk == pk).order_by(jobs.c.id)):
                rows.append(
                    JobRow(r.id, r.task_pk, r.attempt, r.stage, r.service, r.state, r.outputs or {})
                )
        return rows

    def log(self, job: JobRow, workflow: str = "serial") -> str:
        with self.container.db.read() as conn:
            task_id = conn.execute(
                sa.text("SELECT task_id FROM tasks WHERE id = :pk"), {"pk": job.task_pk}
            ).scalar_one()
        r = self.client.get(
            f"/api/workflows/{workflow}/tasks/{task_id}/jobs/{job.id}/log", headers=self.headers
        )
        assert r.status_code == 200, r.text
        return r.text

    def wait_for_pids(self, task_id: int, count: int = 2, timeout: float = 20) -> list[int]:
        path = self.pids / f"{task_id}.pids"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and len(path.read_text().split()) >= count:
                return [int(p) for p in path.read_text().split()]
            time.sleep(0.01)
        raise AssertionError(f"task {task_id} never wrote its pids")


@pytest.fixture
def engine_factory(
    make_repo: RepoFactory, tmp_path: Path, database: Database
) -> Iterator[Callable[..., Engine]]:
    made: list[tuple[TestClient, Container]] = []

    def factory(
        timeout: str = "1h", extra: str = "", gpu_queue: str = "gpu", db: Database | None = None
    ) -> Engine:
        """An engine; `db`: a database of its own instead of the test's."""
        db = db or database
        repo = make_repo("app")
        pids = tmp_path / "pids"
        pids.mkdir()
        config_path = tmp_path / "conveyor.yaml"
        text = CONFIG.format(
            data=tmp_path / "data",
            app=repo.url,
            pids=pids,
            timeout=timeout,
            gpu_queue=gpu_queue,
            config=config_path,
            server_pid=os.getpid(),
            db_port=db.engine.url.port or 5432,
        )
        url = db.engine.url.render_as_string(hide_password=False)
        text = f"database_url: {url}\n{extra}\n{text}"
        config_path.write_text(text)
        config = parse_config(text, base=tmp_path)
        container = build_container(config, db=db, run_jobs=True)
        client = TestClient(create_app(container), raise_server_exceptions=False)
        client.__enter__()
        made.append((client, container))
        token, _ = container.tokens.issue("alice", ["admin"], None)
        headers = {"Authorization": f"Bearer {token}"}
        paths = RunnerPaths(config.data_dir)
        return Engine(client, container, headers, repo, pids, paths, config_path)

    yield factory
    for client, container in made:
        client.__exit__(None, None, None)
        # A database the test passed in may have been disposed before this teardown,
        # while the scheduler still ran and opened connections anew: close those now,
        # not when the garbage collector finds them during some later test.
        container.db.dispose()


@pytest.fixture
def engine(engine_factory: Callable[..., Engine]) -> Engine:
    return engine_factory()
