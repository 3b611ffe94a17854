"""deploy/: the compose example must stay true to the code."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conveyor.cli.main import app
from conveyor.config_file import load_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
runner = CliRunner()


def compose() -> dict[str, dict[str, object]]:
    data = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services: dict[str, dict[str, object]] = data["services"]
    return services


def test_compose_runs_a_server_a_worker_postgres_and_redis() -> None:
    assert set(compose()) == {"server", "worker", "postgres", "redis"}


@pytest.mark.parametrize("service", ["server", "worker"])
def test_compose_commands_are_ones_the_cli_accepts(service: str) -> None:
    command = compose()[service]["command"]
    assert isinstance(command, list)
    # Every option the compose file passes is one the command documents.
    help_text = runner.invoke(app, [command[0], "--help"]).output
    for arg in command[1:]:
        if arg.startswith("-"):
            assert arg in help_text, f"{service}: {arg} is not an option of `conveyor {command[0]}`"


def test_the_compose_config_is_valid_with_the_compose_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = compose()["server"]["environment"]
    assert isinstance(env, dict)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = load_config(DEPLOY / "conveyor.yaml")
    assert cfg.executor == "celery"
    assert cfg.database_url == env["CONVEYOR_DATABASE_URL"]
    assert cfg.broker_url == env["CONVEYOR_BROKER_URL"]
    assert cfg.services["app-gpu-tests"].build.queue == "gpu"


def test_the_image_installs_the_package_and_runs_conveyor() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "pip install --no-cache-dir ." in dockerfile
    assert 'ENTRYPOINT ["conveyor"]' in dockerfile
    assert "git" in dockerfile.split("apt-get install", 1)[1].split("\n", 1)[0]


def test_every_compose_service_is_restarted_by_docker() -> None:
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    assert {name: s.get("restart") for name, s in services.items()} == {
        name: "unless-stopped" for name in services
    }
