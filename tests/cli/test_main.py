"""The `conveyor` command line, in-process and as a real server process."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from typer.testing import CliRunner

from conveyor.cli.main import app
from conveyor.config_file import load_config
from conveyor.wiring import runner_warnings
from tests.conftest import PG_URL, RepoFactory
from tests.fixtures import CONFIG
from tests.server import Server, free_port

runner = CliRunner()


@pytest.fixture
def config_file(make_repo: RepoFactory, tmp_path: Path, database_url: str) -> Path:
    voting, dyliu = make_repo("voting-app", "master"), make_repo("dyliu")
    path = tmp_path / "conveyor.yaml"
    text = CONFIG.format(voting=voting.url, dyliu=dyliu.url)
    path.write_text(f"database_url: {database_url}\n{text}")
    return path


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    return empty_database_url


def test_check_config_ok_and_broken(config_file: Path) -> None:
    result = runner.invoke(app, ["check-config", "-c", str(config_file)])
    assert result.exit_code == 0
    assert "ok (2 repos, 2 services, 3 envs, 2 workflows, 4 roles)" in result.output
    config_file.write_text(config_file.read_text().replace("repos: [dyliu]", "repos: [dyl]"))
    result = runner.invoke(app, ["check-config", "-c", str(config_file)])
    assert result.exit_code == 2
    assert "services.web.build.repos[0]: unknown repo 'dyl'" in result.output


def test_a_sandbox_asked_for_but_unavailable_stops_serve_and_check_config(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text("sandbox: bubblewrap\n" + config_file.read_text())
    monkeypatch.setenv("PATH", "/usr/local/nowhere:/nonexistent")
    for command in ("check-config", "serve"):
        result = runner.invoke(app, [command, "-c", str(config_file)])
        assert result.exit_code == 2, result.output
        assert result.output.splitlines()[-2:] == [
            f"{config_file}: cannot run jobs here as configured",
            "sandbox: bubblewrap is asked for, but bubblewrap is not installed "
            "(Debian and Ubuntu: apt-get install bubblewrap)",
        ]


def test_run_as_an_unknown_user_stops_serve(config_file: Path) -> None:
    config_file.write_text("run_as: no-such-user-here\n" + config_file.read_text())
    result = runner.invoke(app, ["serve", "-c", str(config_file)])
    assert result.exit_code == 2
    assert "run_as: no user 'no-such-user-here' on this machine" in result.output


def test_token_create_prints_only_the_token_and_list_never_shows_it(config_file: Path) -> None:
    result = runner.invoke(
        app, ["token", "create", "-c", str(config_file), "--user", "ci-bot", "--role", "viewer"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cvy_") and len(lines[0]) == 47
    listing = runner.invoke(app, ["token", "list", "-c", str(config_file)])
    assert listing.exit_code == 0
    assert "ci-bot" in listing.stdout and "viewer" in listing.stdout
    assert lines[0] not in listing.stdout


def test_token_create_refuses_unknown_roles_and_bad_expiry(config_file: Path) -> None:
    cfg = str(config_file)
    result = runner.invoke(app, ["token", "create", "-c", cfg, "--user", "u", "--role", "root"])
    assert result.exit_code == 2
    assert "--role: unknown role 'root'" in result.output
    result = runner.invoke(
        app, ["token", "create", "-c", cfg, "--user", "u", "--role", "viewer", "--expires", "soon"]
    )
    assert result.exit_code == 2
    assert "--expires: must be a duration" in result.output


def test_token_revoke(config_file: Path) -> None:
    cfg = str(config_file)
    runner.invoke(
        app, ["token", "create", "-c", cfg, "--user", "u", "--role", "viewer", "--expires", "30d"]
    )
    assert runner.invoke(app, ["token", "revoke", "-c", cfg, "1"]).exit_code == 0
    again = runner.invoke(app, ["token", "revoke", "-c", cfg, "1"])
    assert again.exit_code == 1
    assert "no active token with id 1" in again.output


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    return tmp_path / "demo"


@pytest.fixture
def served_demo(demo_dir: Path) -> Iterator[tuple[str, str, str]]:
    """`conveyor demo` then `conveyor serve`, as `make run` does; yields (url, token, commit)."""
    if PG_URL:
        pytest.skip("the demo is the embedded SQLite setup; covered by the SQLite run")
    port = free_port()
    result = runner.invoke(app, ["demo", "--dir", str(demo_dir), "--port", str(port)])
    assert result.exit_code == 0, result.output
    token = (demo_dir / "token").read_text().strip()
    commit = result.output.split("main at ")[1][:8]
    server = Server(demo_dir / "conveyor.yaml", port, demo_dir / "serve.log")
    server.start()
    try:
        yield server.url, token, commit
    finally:
        server.stop()
    # uvicorn shuts down gracefully, then re-raises SIGTERM as its exit status.
    assert server.proc is not None and server.proc.returncode == -signal.SIGTERM
    assert "Application shutdown complete" in (demo_dir / "serve.log").read_text()


def test_demo_then_serve_accepts_the_printed_curl_request(
    served_demo: tuple[str, str, str], demo_dir: Path
) -> None:
    url, token, commit = served_demo
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "workflow_name": "hello-dev",
        "env_name": "dev",
        "targets": [
            {"name": "hello", "build": {"repos": [{"repo_name": "hello", "branch": "main"}]}}
        ],
    }
    r = httpx.post(f"{url}/api/directory/workflowTask/create", json=body, headers=headers)
    assert r.json() == {"workflow_name": "hello-dev", "task_id": 1}
    [item] = httpx.get(
        f"{url}/api/directory/workflowTask", params={"commitId": commit}, headers=headers
    ).json()
    assert item["url"] == f"{url}/workflows/hello-dev/tasks/1"
    # The demo workflow really builds and deploys.
    deadline = time.monotonic() + 30
    while True:
        detail = httpx.get(f"{url}/api/workflows/hello-dev/tasks/1", headers=headers).json()
        if detail["status"] in ("passed", "failed"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert detail["status"] == "passed"
    logs = [httpx.get(f"{url}{j['log_url']}", headers=headers).text for j in detail["jobs"]]
    assert "Hello from a Conveyor demo repository." in logs[0]
    assert "deploying hello:1 to dev" in logs[1]
    # Running the demo again keeps the same token, repository and database.
    result = runner.invoke(app, ["demo", "--dir", str(demo_dir), "--port", url.rsplit(":", 1)[1]])
    assert result.exit_code == 0
    assert (demo_dir / "token").read_text().strip() == token
    assert (demo_dir / "token").stat().st_mode & 0o077 == 0


def test_serve_refuses_a_broken_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("workflows: {w: {env: nope, services: [x]}}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor", "serve", "-c", str(path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "workflows.w.env: unknown env 'nope'" in proc.stderr
    assert "workflows.w.services[0]: unknown service 'x'" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the warning is about jobs run as root")
def test_jobs_as_root_are_a_warning_that_run_as_removes(config_file: Path) -> None:
    result = runner.invoke(app, ["check-config", "-c", str(config_file)])
    assert result.exit_code == 0
    assert "warning: jobs run as root" in result.output
    with_run_as = load_config(config_file).model_copy(update={"run_as": "nobody"})
    assert runner_warnings(with_run_as) == []


def conveyor(*args: str) -> "subprocess.CompletedProcess[str]":
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_a_database_or_broker_away_at_start_is_one_line_and_exit_3(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = tmp_path / "conveyor.yaml"
    config.write_text(f"database_url: postgresql+psycopg://conveyor:s3cret@127.0.0.1:{port}/ci\n")
    done = conveyor("serve", "-c", str(config), "--port", str(free_port()))
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(
        f"error: the database at postgresql+psycopg://conveyor:***@127.0.0.1:{port}/ci "
        "cannot be reached: connection failed"
    )
    assert line.endswith("check that it runs and accepts connections, and database_url "
                         "(or CONVEYOR_DATABASE_URL)")  # fmt: skip
    assert "s3cret" not in done.stderr + done.stdout
    debug = conveyor("--debug", "token", "list", "-c", str(config))
    assert debug.returncode == 3
    assert "Traceback" in debug.stderr and "OperationalError" in debug.stderr

    config.write_text(
        f"database_url: sqlite:///{tmp_path / 'c.db'}\nexecutor: celery\n"
        f"broker_url: redis://:pw@127.0.0.1:{port}/0\n"
    )
    assert conveyor("check-config", "-c", str(config)).returncode == 0  # no connecting
    done = conveyor("check-config", "-c", str(config), "--connect")
    assert done.returncode == 3
    assert f"error: the broker at redis://:***@127.0.0.1:{port}/0 cannot be reached" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_finds_a_database_driver_that_is_not_installed(tmp_path: Path) -> None:
    config = tmp_path / "conveyor.yaml"
    config.write_text("database_url: postgresql+psycopg2://ci@db.example.com/ci\n")
    done = conveyor("check-config", "-c", str(config))
    assert done.returncode == 2
    assert "its driver is not installed (No module named 'psycopg2')" in done.stderr


def test_json_logs_are_one_object_a_line_with_task_job_and_request_ids(
    demo_dir: Path,
) -> None:
    if PG_URL:
        pytest.skip("the demo is the embedded SQLite setup; covered by the SQLite run")
    port = free_port()
    assert runner.invoke(app, ["demo", "--dir", str(demo_dir), "--port", str(port)]).exit_code == 0
    headers = {"Authorization": f"Bearer {(demo_dir / 'token').read_text().strip()}"}
    # A deploy that runs until it is cancelled: the cancel below finds the task running.
    config = demo_dir / "conveyor.yaml"
    text = config.read_text()
    assert 'script: echo "deploying $IMAGE to $NAMESPACE"' in text
    config.write_text(text.replace('echo "deploying $IMAGE to $NAMESPACE"', "sleep 60"))
    log = demo_dir / "serve.log"
    server = Server(config, port, log, ("--log-format", "json"))
    server.start()
    try:
        body = {"workflow_name": "hello-dev", "env_name": "dev",
                "targets": [{"name": "hello", "build": {"repos": []}}]}  # fmt: skip
        base = f"{server.url}/api/directory/workflowTask"
        task = httpx.post(f"{base}/create", json=body, headers=headers).json()["task_id"]
        cancel = f"{base}/id/{task}/pipelines/hello-dev/cancel"
        r = httpx.post(cancel, headers={**headers, "X-Request-ID": "cancel-from-the-test"})
        assert r.status_code == 200
    finally:
        server.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    changes = [x for x in lines if x["logger"] == "conveyor.state"]
    cancelled = [x for x in changes if x.get("task") == task and x.get("request_id")]
    assert cancelled, changes
    assert cancelled[0]["request_id"] == "cancel-from-the-test"
    assert cancelled[0]["workflow"] == "hello-dev"
    assert cancelled[0]["state"] in ("cancelled", "cancelling")
    assert any("job" in x for x in changes)  # the jobs' changes are lines too
