"""`conveyor login` and `conveyor task …` as a script runs them: the real command, in a
process of its own, against a real `conveyor serve`, checked by output and exit code."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.conftest import PG_URL, GitRepo
from tests.server import Server, free_port

pytestmark = pytest.mark.skipif(
    bool(PG_URL), reason="the CLI talks HTTP to the same API on either database: SQLite run"
)

CONFIG = """
public_url: http://127.0.0.1:{port}
database_url: sqlite:///{home}/conveyor.db
data_dir: {home}/data
repos:
  app: {{url: "{app}", default_branch: main}}
services:
  svc:
    build:
      repos: [app]
      variables: {{MODE: quick}}
      script: |
        case "$MODE" in
          fail) echo "about to fail"; exit 3 ;;
          slow)
            i=0
            until [ -e "{home}/stop-$CONVEYOR_TASK_ID" ]; do
              i=$((i+1)); echo "tick $i"; sleep 0.1
            done ;;
          *) printf 'built in mode %s\\n' "$MODE" ;;
        esac
    deploy: {{script: echo deployed}}
envs:
  dev: {{}}
  staging: {{}}
workflows:
  wf: {{env: dev, envs: [staging], services: [svc], parallel: true}}
  other: {{env: dev, services: [svc]}}
roles:
  admin: {{permissions: [task:view, task:create, task:restart, task:cancel], workflows: ["*"]}}
  viewer: {{permissions: [task:view], workflows: ["*"]}}
"""


class Cli:
    def __init__(self, home: Path) -> None:
        self.home = home
        app = GitRepo(home / "app")
        self.sha = app.commit("second", branch="main")
        port = free_port()
        config = home / "conveyor.yaml"
        config.write_text(CONFIG.format(port=port, home=home, app=app.url))
        self.server = Server(config, port, home / "server.log")
        self.server.start()
        self.token = self.server.issue_token()
        self.viewer = self.server.issue_token("vic", "viewer")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")},
            "XDG_CONFIG_HOME": str(home / "xdg"),
            "CONVEYOR_URL": self.server.url,
            "CONVEYOR_TOKEN": self.token,
            "COLUMNS": "200",
        }

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "conveyor", *args]

    def __call__(
        self, *args: str, env: dict[str, str] | None = None
    ) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            self.argv(*args), env=env or self.env, capture_output=True, text=True, timeout=120
        )

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    found = Cli(tmp_path_factory.mktemp("cli"))
    yield found
    found.server.stop()


def test_login_checks_the_token_and_keeps_it_for_the_owner_alone(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if k not in ("CONVEYOR_URL", "CONVEYOR_TOKEN")}
    bad = cli("login", "--url", cli.server.url, "--token", "cvy_" + "A" * 43, env=env)
    assert (bad.returncode, bad.stderr.strip()) == (
        4, "error: GET /api/workflows: 401 auth failed!: unknown token"
    )  # fmt: skip
    unreachable = cli("login", "--url", "http://127.0.0.1:1", "--token", cli.token, env=env)
    assert unreachable.returncode == 3
    assert "cannot reach http://127.0.0.1:1" in unreachable.stderr
    stored = cli.home / "xdg" / "conveyor" / "credentials"
    assert not stored.exists()  # nothing kept from a failed login

    done = subprocess.run(
        cli.argv("login", "--url", cli.server.url), env=env, input=f"{cli.token}\n",
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert cli.token not in done.stdout  # asked for without echo
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    # The stored server and token serve the task commands; the environment overrides them.
    listed = cli("task", "list", "wf", env=env)
    assert listed.returncode == 0, listed.stderr
    overridden = cli("task", "list", "wf", env={**env, "CONVEYOR_TOKEN": "cvy_nope"})
    assert overridden.returncode == 4
    # The saved token goes to the saved server only, never to a URL named elsewhere.
    elsewhere = cli("task", "list", "--url", "http://127.0.0.1:1", env=env)
    assert (elsewhere.returncode, elsewhere.stderr.strip()) == (
        4, "error: no token: give --token, set CONVEYOR_TOKEN, or run `conveyor login`"
    )  # fmt: skip
    no_tty = subprocess.run(
        cli.argv("login", "--url", cli.server.url), env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert no_tty.returncode == 3 and "Traceback" not in no_tty.stderr


def test_run_wait_exits_with_the_tasks_code(cli: Cli) -> None:
    passed = cli("task", "run", "wf", "--target", "svc:app@main", "--var", "MODE=loud", "--wait")
    assert passed.returncode == 0, passed.stderr
    assert "build svc: passed (script exited with 0)" in passed.stdout
    assert passed.stdout.rstrip().endswith("passed: " + passed.stdout.split(": ")[1].split()[0])
    failed = cli("task", "run", "wf", "-t", "svc", "--var", "MODE=fail", "--wait", "--json")
    assert failed.returncode == 1
    task = json.loads(failed.stdout)
    assert (task["status"], task["jobs"][0]["detail"]) == ("failed", "script exited with 3")
    logs = cli("task", "logs", "wf", str(task["task_id"]))
    assert "about to fail" in logs.stdout and "== deploy svc" in logs.stdout
    built = cli.json("task", "list", "--commit", cli.sha[:10])
    assert {t["task_id"] for t in built} >= {task["task_id"]}
    shown = cli.json("task", "show", "wf", str(task["task_id"] - 1))
    log = cli("task", "logs", "wf", str(shown["task_id"]), str(shown["jobs"][0]["id"]))
    assert "built in mode loud" in log.stdout  # the variable reached the build


def test_cancel_and_restart_and_what_wait_says_of_them(cli: Cli) -> None:
    created = cli.json("task", "run", "wf", "-t", "svc", "--var", "MODE=slow", "--env", "staging")
    task = str(created["task_id"])
    assert created["url"] == f"{cli.server.url}/workflows/wf/tasks/{task}"
    cancelled = cli("task", "cancel", "wf", task)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cli("task", "wait", "wf", task).returncode == 2
    restarted = cli.json("task", "restart", "wf", task)
    assert (restarted["attempt"], restarted["env_name"]) == (2, "staging")
    assert cli("task", "cancel", "wf", task).returncode == 0
    # A viewer may look but not act: an auth or permission error is 4.
    as_viewer = {**cli.env, "CONVEYOR_TOKEN": cli.viewer}
    assert cli("task", "show", "wf", task, env=as_viewer).returncode == 0
    refused = cli("task", "restart", "wf", task, env=as_viewer)
    assert refused.returncode == 4
    assert "lacks task:restart" in refused.stderr


def test_logs_follow_a_running_job_until_it_ends(cli: Cli) -> None:
    created = cli.json("task", "run", "wf", "-t", "svc", "--var", "MODE=slow")
    task = created["task_id"]
    with subprocess.Popen(
        cli.argv("task", "logs", "wf", str(task), "-f"), env=cli.env,
        stdout=subprocess.PIPE, text=True,
    ) as follow:  # fmt: skip
        assert follow.stdout is not None
        for line in follow.stdout:
            if line.startswith("tick 3"):
                break
        (cli.home / f"stop-{task}").touch()  # the job ends; the follower must see it out
        rest = follow.stdout.read()
        assert follow.wait(timeout=60) == 0
    assert "[conveyor] build passed: script exited with 0" in rest
    assert "deployed" in rest  # and the deploy's log after it


def test_usage_errors_are_3_and_say_what_is_wrong(cli: Cli) -> None:
    for args, message in (
        (("task", "run", "wf", "-t", "nope"), "'nope' is not a service of workflow 'wf'"),
        (("task", "run", "wf", "-t", "svc:app!x"), "'x' is not a merge request number"),
        (("task", "run", "wf", "-t", "svc", "--var", "NOPE=1"), "--var NOPE: no service"),
        (("task", "run", "wf", "-t", "svc:app@no-such"), "branch 'no-such' not found"),
        (("task", "list", "--bogus"), "No such option: --bogus"),
        (("task", "show", "wf", "0"), "Invalid value for 'task_id'"),
    ):
        done = cli(*args)
        assert done.returncode == 3, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
    version = cli("--version")
    assert (version.returncode, version.stdout.split()[0]) == (0, "conveyor")


def test_a_server_asked_to_stop_answers_the_requests_waiting_for_a_task(
    tmp_path: Path,
) -> None:
    """A `?wait=60` (what `task wait` rides on) must not hold the shutdown for a minute."""
    own = Cli(tmp_path)  # this test stops its server
    try:
        task = own.json("task", "run", "wf", "-t", "svc", "--var", "MODE=slow")["task_id"]
        url = f"{own.server.url}/api/workflows/wf/tasks/{task}"
        headers = {"Authorization": f"Bearer {own.token}"}
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(httpx.get, url, params={"wait": "60"}, headers=headers,
                                  timeout=90)  # fmt: skip
            deadline = time.monotonic() + 30
            while (
                "conveyor_requests_waiting 1.0" not in httpx.get(f"{own.server.url}/metrics").text
            ):
                assert not waiting.done(), waiting.result().text
                assert time.monotonic() < deadline, "the request never started waiting"
                time.sleep(0.02)
            asked = time.monotonic()
            assert own.server.proc is not None
            own.server.proc.terminate()
            answer = waiting.result(timeout=30)
            # uvicorn ends by raising the signal again once it has shut down.
            assert own.server.proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert time.monotonic() - asked < 10  # not the 60 s the wait allowed
        assert (answer.status_code, answer.json()["status"]) == (200, "running")
    finally:
        (tmp_path / f"stop-{task}").touch()
        own.server.stop()
