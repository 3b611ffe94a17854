"""Request data reaches a job only as values of the variables its build declares."""

from pathlib import Path
from typing import Any

from tests.engine.conftest import Engine

URL = "/api/directory/workflowTask/create"


def _create(engine: Engine, envs: list[dict[str, str]]) -> tuple[int, dict[str, Any]]:
    body = {
        "workflow_name": "serial",
        "env_name": "dev",
        "targets": [{"name": "api", "build": {"repos": []}, "envs": envs}],
    }
    r = engine.client.post(URL, json=body, headers=engine.headers)
    return r.status_code, r.json()


def test_a_request_cannot_set_bash_env_or_any_undeclared_variable(
    engine: Engine, tmp_path: Path
) -> None:
    pwned = tmp_path / "pwned"
    for key in ("BASH_ENV", "ENV", "PATH", "LD_PRELOAD", "SHELLOPTS", "PS4", "NAMESPACE"):
        status, body = _create(engine, [{"key": key, "value": f"$(touch {pwned})"}])
        assert status == 400, body
        assert body["detail"].startswith(f"targets[0].envs[0].key: {key!r} is not a build")
    # Nothing was stored, so nothing ran: the first accepted task is task 1.
    task = engine.create(api="")
    assert task == 1
    assert engine.wait(task)["status"] == "passed"
    assert not pwned.exists()


def test_a_declared_value_reaches_the_build_only(engine: Engine) -> None:
    status, body = _create(engine, [{"key": "GREETING", "value": "$(id) `id` ; id"}])
    assert status == 200, body
    task = body["task_id"]
    assert engine.wait(task)["status"] == "passed"
    build, deploy = engine.jobs(task)
    # The value arrives as data, never run: the shell does not expand it again.
    assert "greeting=$(id) `id` ; id\n" in engine.log(build)
    assert "deploy sees greeting=unset" in engine.log(deploy)


def test_the_declared_default_is_used_when_the_request_sets_nothing(engine: Engine) -> None:
    task = engine.create(api="")
    assert engine.wait(task)["status"] == "passed"
    build, _ = engine.jobs(task)
    assert "greeting=hello" in engine.log(build)


def test_build_outputs_cannot_run_code_in_the_deploy_or_move_it(engine: Engine) -> None:
    task = engine.create(api="smuggle")
    assert engine.wait(task)["status"] == "passed"
    build, deploy = engine.jobs(task)
    text = engine.log(build)
    assert "ignored line 1 of $CONVEYOR_OUTPUT: BASH_ENV is not a declared output" in text
    assert "ignored line 2 of $CONVEYOR_OUTPUT: NAMESPACE is not a declared output" in text
    text = engine.log(deploy)
    assert f"deploy api reg/api:{task} to dev" in text
    assert not (engine.pids / "smuggled").exists()
