"""`conveyor demo`: a ready-to-try setup for a newcomer: a git repository with a commit,
one service, one env, one workflow, a token, and curl lines that use them."""

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conveyor.config_file import load_config
from conveyor.domain.errors import AuthFailed
from conveyor.storage import migrate
from conveyor.wiring import build_container

DEMO_WORKFLOW = "hello-dev"

_CONFIG = """\
# A demo made by `conveyor demo`. Edit freely; `conveyor check-config -c {config}` validates.
public_url: http://127.0.0.1:{port}
database_url: sqlite:///conveyor.db
executor: local

repos:
  hello: {{url: "{repo}", default_branch: main}}

services:
  hello:
    build:
      repos: [hello]
      script: |
        echo "building hello at $HELLO_COMMIT"
        cat hello/README.md
        echo "IMAGE=hello:$CONVEYOR_TASK_ID" >> "$CONVEYOR_OUTPUT"
        printf '\\033[32mbuilt hello:%s\\033[0m\\n' "$CONVEYOR_TASK_ID"
      outputs: [IMAGE]    # what the build may hand its deploy
      timeout: 5m
    deploy:
      script: echo "deploying $IMAGE to $NAMESPACE"
      timeout: 1m

envs:
  dev: {{vars: {{NAMESPACE: dev}}}}

workflows:
  {workflow}: {{env: dev, services: [hello]}}

roles:
  admin:
    permissions: [task:view, task:create, task:restart, task:cancel]
    workflows: ["*"]
"""


@dataclass(frozen=True)
class Demo:
    config_path: Path
    repo_path: Path
    commit: str
    token: str
    base_url: str


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Conveyor Demo",
        "GIT_AUTHOR_EMAIL": "demo@conveyor.invalid",
        "GIT_COMMITTER_NAME": "Conveyor Demo",
        "GIT_COMMITTER_EMAIL": "demo@conveyor.invalid",
    }
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


def _ensure_repo(path: Path) -> str:
    if not (path / ".git").is_dir():
        path.mkdir(parents=True, exist_ok=True)
        _git(path, "init", "-q", "-b", "main")
        (path / "README.md").write_text("Hello from a Conveyor demo repository.\n")
        _git(path, "add", "README.md")
        _git(path, "commit", "-q", "-m", "Say hello")
    return _git(path, "rev-parse", "refs/heads/main")


def prepare_demo(directory: Path, port: int) -> Demo:
    """Create (or reuse) the demo under `directory`; safe to run again."""
    directory = directory.resolve()
    repo = directory / "repos" / "hello"
    commit = _ensure_repo(repo)
    config_path = directory / "conveyor.yaml"
    config_path.write_text(
        _CONFIG.format(config=config_path, port=port, repo=repo, workflow=DEMO_WORKFLOW)
    )
    config = load_config(config_path)
    container = build_container(config)
    try:
        migrate.upgrade(container.db)
        token_file = directory / "token"
        token = token_file.read_text().strip() if token_file.exists() else ""
        try:
            container.tokens.authenticate(f"Bearer {token}")
        except AuthFailed:
            token, _ = container.tokens.issue("demo", ["admin"], None)
            token_file.touch(mode=0o600)
            token_file.write_text(token + "\n")
    finally:
        container.db.dispose()
    return Demo(config_path, repo, commit, token, config.public_url)


def demo_instructions(demo: Demo) -> str:
    body = json.dumps(
        {
            "workflow_name": DEMO_WORKFLOW,
            "env_name": "dev",
            "targets": [
                {"name": "hello", "build": {"repos": [{"repo_name": "hello", "branch": "main"}]}}
            ],
        }
    )
    api = f"{demo.base_url}/api/directory/workflowTask"
    auth = f'-H "Authorization: Bearer {demo.token}"'
    json_type = "-H 'Content-Type: application/json'"
    return "\n".join(
        [
            f"Conveyor demo ready: config {demo.config_path}",
            f"  demo repository {demo.repo_path} (main at {demo.commit[:8]})",
            f"  token (role admin): {demo.token}",
            "",
            f"Open {demo.base_url}/ in a browser and paste the token to sign in,",
            "or use the API:",
            "",
            "Create a task:",
            f"  curl -s -X POST {api}/create {auth} {json_type} -d '{body}'",
            "Find every task that built the commit:",
            f'  curl -s "{api}?commitId={demo.commit[:8]}" {auth}',
            "Watch task 1: its jobs, then a job's log (ids are in the jobs list):",
            f"  curl -s {demo.base_url}/api/workflows/{DEMO_WORKFLOW}/tasks/1 {auth}",
            f"  curl -s {demo.base_url}/api/workflows/{DEMO_WORKFLOW}/tasks/1/jobs/1/log {auth}",
            "Cancel or restart task 1:",
            f"  curl -s -X POST {api}/id/1/pipelines/{DEMO_WORKFLOW}/cancel {auth}",
            f"  curl -s -X POST {api}/id/1/pipelines/{DEMO_WORKFLOW}/restart {auth}",
            f"API docs: {demo.base_url}/docs",
            "",
        ]
    )
