"""The whole loop on a real `conveyor serve`: a GitLab hook starts a task, the task runs
real jobs, and its commit statuses reach a real HTTP server playing GitLab, even across
a kill -9 of the server."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.conftest import GitRepo, RepoFactory
from tests.engine.test_crash_recovery import admin_headers
from tests.hooks import gitlab_payloads as gl
from tests.hooks.fake_gitlab import Answer, FakeGitlab
from tests.server import Server, free_port

SECRET = "hook-secret-0123456789"
PROJECT = "demo/app"
TOKEN = "glpat-e2e-token-0123"
CONFIG = """
public_url: http://127.0.0.1:{port}
database_url: {database_url}
data_dir: data
gitlab: {{url: "{gitlab}", token: "{token}", webhook_secret: "{secret}"}}
repos:
  app: {{url: "{app}", gitlab_project: "{project}"}}
services:
  svc:
    build:
      repos: [app]
      script: |
        git -C app rev-list --parents -n 1 HEAD >> "{home}/built"
    deploy: {{script: "true"}}
  broken:
    build: {{repos: [app], script: "exit 1"}}
    deploy: {{script: "true"}}
envs:
  dev: {{}}
workflows:
  wf:
    env: dev
    services: [svc]
    triggers:
      - {{event: push, repo: app, branches: [main]}}
      - {{event: merge_request, repo: app, target_branches: [main]}}
  breaks: {{env: dev, services: [broken]}}
roles:
  admin: {{permissions: [task:view, task:create, task:restart, task:cancel], workflows: ["*"]}}
"""
FINAL = {"success", "failed", "canceled"}
ORDER = ["pending", "running", "success", "failed", "canceled"]


@pytest.fixture
def app(make_repo: RepoFactory) -> GitRepo:
    return make_repo("app")


@pytest.fixture
def server(
    app: GitRepo, tmp_path: Path, empty_database_url: str, fake_gitlab: FakeGitlab
) -> Iterator[Server]:
    port = free_port()
    config = tmp_path / "conveyor.yaml"
    config.write_text(
        CONFIG.format(
            port=port,
            database_url=empty_database_url,
            gitlab=fake_gitlab.url,
            token=TOKEN,
            secret=SECRET,
            app=app.url,
            home=tmp_path,
            project=PROJECT,
        )
    )
    srv = Server(config, port, tmp_path / "server.log")
    srv.start()
    yield srv
    srv.stop()


def hook(server: Server, event: str, body: dict[str, Any]) -> list[int]:
    r = httpx.post(f"{server.url}/api/hooks/gitlab", json=body, headers=gl.headers(event, SECRET))
    assert r.status_code == 200, r.text
    return [t["task_id"] for t in r.json()["tasks"]]


def final_status(fake: FakeGitlab, sha: str) -> None:
    fake.wait_for(lambda: bool(fake.statuses(sha)) and fake.statuses(sha)[-1]["state"] in FINAL)


def assert_in_order(states: list[str]) -> None:
    """Latest wins, and nothing goes backwards (waiting states may be coalesced away)."""
    assert states == sorted(states, key=ORDER.index), states
    assert len(states) == len(set(states)), states


def test_a_push_runs_at_the_pushed_commit_and_gitlab_sees_it_through(
    server: Server, app: GitRepo, fake_gitlab: FakeGitlab, tmp_path: Path
) -> None:
    sha = app.commit("pushed", branch="main")
    body = gl.push(
        project=PROJECT, ref="refs/heads/main", before=gl.ZERO_SHA, after=sha, checkout_sha=sha
    )
    assert hook(server, gl.PUSH_HOOK, body) == [1]
    final_status(fake_gitlab, sha)
    statuses = fake_gitlab.statuses(sha)
    assert_in_order([s["state"] for s in statuses])
    # The sender posts a commit's newest state: a task that starts before its first
    # post skips `pending` (tests/services/test_delivery.py holds the rule).
    assert statuses[0]["state"] in ("pending", "running")
    assert statuses[-1] == {
        "sha": sha,
        "state": "success",
        "name": "conveyor/wf",
        "target_url": f"{server.url}/workflows/wf/tasks/1",
        "description": statuses[-1]["description"],
        "ref": "main",
    }
    assert statuses[-1]["description"].startswith("passed in ")
    posted = [r for r in fake_gitlab.received if r.path.endswith(sha)]
    assert all(r.headers["private-token"] == TOKEN for r in posted)
    assert (tmp_path / "built").read_text().split() == [sha, *sha_parents(app, sha)]


def sha_parents(app: GitRepo, sha: str) -> list[str]:
    from tests.conftest import git

    return git(app.path, "rev-list", "--parents", "-n", "1", sha).split()[1:]


def test_a_merge_request_builds_its_head_merged_onto_the_target_and_reports_on_the_head(
    server: Server, app: GitRepo, fake_gitlab: FakeGitlab, tmp_path: Path
) -> None:
    base = app.head("main")
    head = app.merge_request(4, "feature work")
    body = gl.merge_request(
        project=PROJECT, action="open", iid=4, last_commit=head, target_branch="main"
    )
    assert hook(server, gl.MERGE_REQUEST_HOOK, body) == [1]
    final_status(fake_gitlab, head)
    assert fake_gitlab.statuses(head)[-1]["state"] == "success"
    assert fake_gitlab.statuses(head)[-1]["ref"] == "refs/merge-requests/4/head"
    # What ran was a merge commit of the target's head and the merge request's head.
    merge, *parents = (tmp_path / "built").read_text().split()
    assert parents == [base, head]
    assert merge not in (base, head)
    assert fake_gitlab.statuses(base) == []  # the base commit is not the MR's to mark


def test_a_failed_build_says_so_on_the_commit(
    server: Server, app: GitRepo, fake_gitlab: FakeGitlab
) -> None:
    body = {
        "workflow_name": "breaks",
        "env_name": "dev",
        "targets": [{"name": "broken", "build": {"repos": []}}],
    }
    url = f"{server.url}/api/directory/workflowTask/create"
    assert httpx.post(url, json=body, headers=admin_headers(server)).status_code == 200
    sha = app.head("main")
    final_status(fake_gitlab, sha)
    last = fake_gitlab.statuses(sha)[-1]
    assert (last["state"], last["name"]) == ("failed", "conveyor/breaks")
    assert last["description"] == "build broken failed: script exited with 1"


def test_statuses_gitlab_missed_are_delivered_after_a_kill_9_and_a_restart(
    server: Server, app: GitRepo, fake_gitlab: FakeGitlab
) -> None:
    fake_gitlab.responder = lambda r: Answer(503, '{"message":"down for maintenance"}')
    sha = app.commit("pushed", branch="main")
    body = gl.push(
        project=PROJECT, ref="refs/heads/main", before=gl.ZERO_SHA, after=sha, checkout_sha=sha
    )
    assert hook(server, gl.PUSH_HOOK, body) == [1]
    headers = admin_headers(server)
    detail = f"{server.url}/api/workflows/wf/tasks/1"
    deadline = time.monotonic() + 30
    while httpx.get(detail, headers=headers).json()["status"] != "passed":
        assert time.monotonic() < deadline, "the task never passed"
        time.sleep(0.05)
    fake_gitlab.wait_for(lambda: any(r.path.endswith(sha) for r in fake_gitlab.received))
    server.kill()
    assert fake_gitlab.statuses(sha) == []
    fake_gitlab.responder = lambda r: Answer()
    server.start()
    final_status(fake_gitlab, sha)
    assert [s["state"] for s in fake_gitlab.statuses(sha)] == ["success"]
