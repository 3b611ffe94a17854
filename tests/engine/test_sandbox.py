"""End to end on the local executor: a service with `sandbox: bubblewrap` and
`network: false` runs its jobs confined; what the job tried is in its log."""

import os
import subprocess

import pytest

from conveyor.executors.sandbox import Isolation, sandbox_problem
from tests.engine.conftest import Engine


def require_bubblewrap() -> None:
    why = sandbox_problem(Isolation())
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the sandbox tests need bubblewrap in CI: {why}")
        pytest.skip(f"no sandbox here: {why}")


def assert_confined(engine: Engine, task: int) -> None:
    """The jail service's probes (tests/engine/conftest.py) all failed, each saying why."""
    [build] = [j for j in engine.jobs(task, "parallel") if j.stage == "build"]
    log = engine.log(build, "parallel")
    assert "workspace=app \n" in log  # its checkout, and nothing else
    assert f"cat: {engine.config_path}: No such file or directory" in log
    assert "hunter2-secret" not in log and "roles:" not in log
    assert f"workspaces: {build.id} \n" in log  # no other job's
    assert f"kill: ({os.getpid()}) - No such process" in log
    assert "Connection refused" in log or "Network is unreachable" in log
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True)
    assert "sleep 3600.5" not in ps.stdout, "a process outlived its sandboxed job"


def test_a_sandboxed_service_runs_confined(engine: Engine) -> None:
    require_bubblewrap()
    task = engine.create("parallel", jail="")
    assert engine.wait(task, workflow="parallel")["status"] == "passed"
    assert_confined(engine, task)
