from pathlib import Path

import pytest

from conveyor.settings import ConfigError, load_config, parse_config

GOOD = """
public_url: http://ci.example.com/
database_url: sqlite:///state/conveyor.db
repos:
  voting-app: {url: /srv/voting-app.git, default_branch: master}
  dyliu: {url: /srv/dyliu.git}
services:
  redis3:
    build: {repos: [voting-app, dyliu], script: make build, timeout: 30m}
    deploy: {script: ./deploy.sh}
envs:
  dev: {vars: {NAMESPACE: dev}}
  staging: {}
workflows:
  autoproject-workflow-dev: {env: dev, envs: [staging], services: [redis3]}
roles:
  developer: {permissions: [task:view, task:create], workflows: ["autoproject-*"]}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, base=Path("/cfg"))
    return info.value.problems


def test_a_good_file_loads_with_defaults_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "conveyor.yaml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.public_url == "http://ci.example.com"
    assert cfg.database_url == f"sqlite:///{tmp_path}/state/conveyor.db"
    assert cfg.data_dir == tmp_path / ".conveyor"
    assert cfg.executor == "local"
    svc = cfg.services["redis3"]
    assert svc.build.timeout == 1800
    assert svc.deploy.timeout == 600
    assert cfg.repos["dyliu"].default_branch == "main"
    assert cfg.workflows["autoproject-workflow-dev"].allowed_envs == {"dev", "staging"}
    assert cfg.workflows["autoproject-workflow-dev"].parallel is False


def test_unknown_repo_names_its_key_path() -> None:
    text = GOOD.replace("[voting-app, dyliu]", "[voting-app, nope]")
    assert problems_of(text) == ["services.redis3.build.repos[1]: unknown repo 'nope'"]


def test_every_problem_is_reported_at_once() -> None:
    text = (
        GOOD.replace("env: dev,", "env: prod,")
        .replace("services: [redis3]", "services: [redis3, redis4]")
        .replace("[staging]", "[staging, qa]")
    )
    assert problems_of(text) == [
        "workflows.autoproject-workflow-dev.env: unknown env 'prod'",
        "workflows.autoproject-workflow-dev.envs[1]: unknown env 'qa'",
        "workflows.autoproject-workflow-dev.services[1]: unknown service 'redis4'",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("timeout: 30m", "timeout: soon"), "services.redis3.build.timeout: must be a duration"),
        (("timeout: 30m", "timeout: 0s"), "services.redis3.build.timeout: must be positive"),
        (("script: make build,", "scrip: make build,"), "services.redis3.build.script: required"),
        (("task:create]", "task:delete]"), "roles.developer.permissions[1]: Input should be"),
        (("default_branch: master", "default_branch: '-x'"), "repos.voting-app.default_branch:"),
        (("public_url: http://ci.example.com/", "public_url: ftp://x"), "public_url: must be"),
        (("envs:\n", "envz: {}\nenvs:\n"), "envz: unknown key"),
    ],
)
def test_bad_values_name_their_key(change: tuple[str, str], expected: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    found = problems_of(text)
    assert any(p.startswith(expected) for p in found), found


def test_duplicate_keys_are_an_error_not_a_silent_overwrite() -> None:
    text = GOOD.replace("  staging: {}\n", "  staging: {}\n  dev: {}\n")
    [problem] = problems_of(text)
    assert "duplicate key 'dev'" in problem


def test_celery_needs_a_broker() -> None:
    assert problems_of(GOOD + "executor: celery\n") == [
        "broker_url: required when executor is 'celery'"
    ]


def test_names_that_cannot_appear_in_urls_are_refused() -> None:
    text = GOOD.replace("autoproject-workflow-dev:", "'auto project':")
    assert problems_of(text)[0].startswith("workflows.auto project: a workflow name may hold")


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", "postgresql+psycopg://u@db/conveyor")
    cfg = parse_config(GOOD)
    assert cfg.database_url == "postgresql+psycopg://u@db/conveyor"


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "missing.yaml")
    assert problems_of("- a\n- b\n") == [
        "the file must hold a mapping of keys (public_url, repos, …)"
    ]
    assert problems_of("repos: {a: [}")[0].startswith("not valid YAML")


def test_secrets_from_the_environment_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    text = GOOD.replace("staging: {}", "staging: {secrets: {TOKEN: 'env:CONVEYOR_TEST_TOKEN'}}")
    monkeypatch.delenv("CONVEYOR_TEST_TOKEN", raising=False)
    assert problems_of(text) == [
        "envs.staging.secrets.TOKEN: environment variable 'CONVEYOR_TEST_TOKEN' is not set"
    ]
    monkeypatch.setenv("CONVEYOR_TEST_TOKEN", "x")
    assert parse_config(text).envs["staging"].secrets == {"TOKEN": "env:CONVEYOR_TEST_TOKEN"}
