from pathlib import Path

import pytest

from conveyor.config_file import ConfigError, load_config, parse_config

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
    monkeypatch.setenv("CONVEYOR_TEST_TOKEN", "x" * 8)
    assert parse_config(text).envs["staging"].secrets == {"TOKEN": "env:CONVEYOR_TEST_TOKEN"}


def _with_variables(variables: str) -> str:
    text = GOOD.replace("timeout: 30m}", f"timeout: 30m, variables: {variables}}}")
    assert text != GOOD
    return text


def test_declared_build_variables_load_with_their_defaults() -> None:
    cfg = parse_config(_with_variables("{FLAVOUR: plain, DEBUG: ''}"))
    assert cfg.services["redis3"].build.variables == {"FLAVOUR": "plain", "DEBUG": ""}


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("BASH_ENV", "is reserved: bash runs the file it names before the script"),
        ("ENV", "is reserved: sh, and bash as sh, run the file"),
        ("SHELLOPTS", "is reserved: turns shell options on"),
        ("PS4", "is reserved: expanded before each traced command"),
        ("IFS", "is reserved: changes how the script's words are split"),
        ("PATH", "is reserved: decides which programs the script runs"),
        ("LD_PRELOAD", "is reserved: the dynamic loader loads code"),
        ("CONVEYOR_TASK_ID", "is reserved: Conveyor's own variables"),
        ("BASH_FUNC_x", "is reserved: bash's own variables"),
        ("GIT_SSH_COMMAND", "is reserved: git reads them"),
        ("PYTHONSTARTUP", "is reserved: Python loads code"),
        ("NODE_OPTIONS", "is reserved: Node.js loads code"),
        ("9LIVES", "must be a shell variable name"),
        ("A-B", "must be a shell variable name"),
    ],
)
def test_build_variables_that_would_turn_a_value_into_code_are_refused(name: str, why: str) -> None:
    [problem] = problems_of(_with_variables(f"{{'{name}': x}}"))
    assert problem.startswith(f"services.redis3.build.variables.{name}: {why}"), problem


def test_build_variables_may_not_shadow_what_conveyor_or_the_environment_sets() -> None:
    text = _with_variables("{NAMESPACE: x, VOTING_APP_BRANCH: y, DYLIU_COMMIT: z}")
    assert problems_of(text) == [
        "services.redis3.build.variables.VOTING_APP_BRANCH: Conveyor sets it (repo 'voting-app')",
        "services.redis3.build.variables.DYLIU_COMMIT: Conveyor sets it (repo 'dyliu')",
        "services.redis3.build.variables.NAMESPACE: also in envs.dev.vars "
        "(workflow 'autoproject-workflow-dev' runs it there)",
    ]


def test_a_default_value_follows_the_same_rules_as_a_request_value() -> None:
    [problem] = problems_of(_with_variables('{NOTE: "two\\nlines"}'))
    assert problem == (
        "services.redis3.build.variables.NOTE: must not hold control characters other than "
        "tab; found '\\n' at 3"
    )


def test_a_secret_too_short_to_mask_is_an_error_not_a_silent_leak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_PIN", "1234")
    text = GOOD.replace(
        "staging: {}", "staging: {secrets: {PIN: 'env:CONVEYOR_TEST_PIN', KEY: abc}}"
    )
    assert problems_of(text) == [
        "envs.staging.secrets.PIN: a secret must be at least 8 characters long, or it could "
        "not be masked in job logs (this one has 4)",
        "envs.staging.secrets.KEY: a secret must be at least 8 characters long, or it could "
        "not be masked in job logs (this one has 3)",
    ]


def test_a_deploy_may_do_without_a_checkout_and_says_so_with_a_boolean() -> None:
    assert parse_config(GOOD).services["redis3"].deploy.checkout is True
    off = GOOD.replace(
        "    deploy: {script: ./deploy.sh}", "    deploy: {script: ./deploy.sh, checkout: false}"
    )
    assert parse_config(off).services["redis3"].deploy.checkout is False
    wrong = GOOD.replace(
        "    deploy: {script: ./deploy.sh}", "    deploy: {script: ./deploy.sh, checkout: 'no'}"
    )
    [problem] = problems_of(wrong)
    assert problem.startswith("services.redis3.deploy.checkout: ")


def test_sandbox_settings_and_a_service_without_network() -> None:
    text = GOOD.replace(
        "    deploy: {script: ./deploy.sh}", "    deploy: {script: ./deploy.sh}\n    network: false"
    )
    assert problems_of(text) == [
        "services.redis3.network: false needs sandbox: bubblewrap, the only way Conveyor has "
        "to take a job's network away"
    ]
    cfg = parse_config("sandbox: bubblewrap\nrun_as: builder\n" + text)
    assert (cfg.sandbox, cfg.run_as, cfg.sandbox_of("redis3")) == (
        "bubblewrap",
        "builder",
        "bubblewrap",
    )
    assert cfg.network_of("redis3") is False
    per_service = text.replace("    network: false", "    network: false\n    sandbox: bubblewrap")
    assert parse_config(per_service).sandbox_of("redis3") == "bubblewrap"
    assert problems_of("sandbox: docker\n" + GOOD) == [
        "sandbox: Input should be 'none' or 'bubblewrap'"
    ]


def test_credentials_in_repo_urls_are_masked_like_secrets() -> None:
    text = GOOD.replace(
        "/srv/voting-app.git", "https://ci-bot:glpat-Super%40Secret-99@gitlab.example.com/x.git"
    ).replace("/srv/dyliu.git", "https://tok-0123456789abcdef@gitlab.example.com/y.git")
    values = parse_config(text).secret_values()
    assert {"glpat-Super%40Secret-99", "glpat-Super@Secret-99", "tok-0123456789abcdef"} <= set(
        values
    )


def test_one_run_reports_every_problem_at_once() -> None:
    """Duplicate keys, bad values and references across parts, in one list: a person
    fixes them in one go, not over three runs."""
    text = (
        GOOD.replace("  dyliu: {url: /srv/dyliu.git}\n", "  dyliu: {url: /a}\n  dyliu: {url: /b}\n")
        .replace("timeout: 30m", "timeout: soon")
        .replace("services: [redis3]", "services: [redis3, ghost]")
        .replace("task:create]", "task:fly]")
    )
    assert problems_of(text) == [
        "duplicate key 'dyliu' (line 7)",
        "services.redis3.build.timeout: must be a duration like 90s, 30m, 1h or 30d, not 'soon'",
        "roles.developer.permissions[1]: Input should be 'task:view', 'task:create', "
        "'task:restart' or 'task:cancel'",
        "workflows.autoproject-workflow-dev.services[1]: unknown service 'ghost'",
    ]


def test_what_refers_to_a_broken_part_is_not_reported_twice() -> None:
    text = GOOD.replace("script: make build, ", "")  # redis3 has no script: set aside
    assert problems_of(text) == ["services.redis3.build.script: required key is missing"]


GITLAB = """
gitlab: {url: "https://gitlab.example.com/", token: env:GL_TOKEN, webhook_secret: env:GL_HOOK}
notifications:
  - {url: "https://chat.example.com/hook", secret: env:GL_HOOK, events: [task.failed]}
"""
WITH_TRIGGERS = GITLAB + GOOD.replace(
    "default_branch: master}", "default_branch: master, gitlab_project: demo/voting-app}"
).replace(
    "autoproject-workflow-dev: {env: dev, envs: [staging], services: [redis3]}",
    """autoproject-workflow-dev:
    env: dev
    services: [redis3]
    auto_cancel: true
    triggers:
      - {event: push, repo: voting-app, branches: ["master", "release/*"]}
      - {event: merge_request, repo: voting-app, target_branches: [master]}
      - {event: tag, repo: voting-app}""",
)


@pytest.fixture
def gitlab_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GL_TOKEN", "glpat-0123456789abcdef")
    monkeypatch.setenv("GL_HOOK", "hook-secret-0123456789")


@pytest.mark.usefixtures("gitlab_env")
def test_gitlab_triggers_and_notifications_load() -> None:
    cfg = parse_config(WITH_TRIGGERS, base=Path("/cfg"))
    assert cfg.gitlab is not None
    assert cfg.gitlab.url == "https://gitlab.example.com"
    assert cfg.gitlab.resolved_token() == "glpat-0123456789abcdef"
    wf = cfg.workflows["autoproject-workflow-dev"]
    assert wf.auto_cancel is True
    assert [t.patterns for t in wf.triggers] == [["master", "release/*"], ["master"], ["*"]]
    assert cfg.notifications[0].events == ["task.failed"]
    # Hook secrets and the token are masked in job logs like any secret.
    assert {"glpat-0123456789abcdef", "hook-secret-0123456789"} <= set(cfg.secret_values())


@pytest.mark.usefixtures("gitlab_env")
def test_trigger_mistakes_are_reported_at_once_naming_their_key() -> None:
    text = (
        WITH_TRIGGERS.replace("{event: tag, repo: voting-app}", "{event: tag, repo: nope}")
        .replace("target_branches: [master]}", "target_branches: [master], branches: [x]}")
        .replace('branches: ["master", "release/*"]}', "branches: [master], services: [web]}")
    )
    assert problems_of(text) == [
        "workflows.autoproject-workflow-dev.triggers[0].services[0]: 'web' is not a service "
        "of the workflow",
        "workflows.autoproject-workflow-dev.triggers[1].branches: not for a merge_request "
        "trigger (it takes target_branches)",
        "workflows.autoproject-workflow-dev.triggers[2].repo: unknown repo 'nope'",
    ]


def test_triggers_need_the_hook_secret_and_a_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GL_TOKEN", "short")
    text = WITH_TRIGGERS.replace(", gitlab_project: demo/voting-app", "")
    assert problems_of(text) == [
        "gitlab.token: must be at least 8 characters long, or it could not be masked in job "
        "logs (this one has 5)",
        "gitlab.webhook_secret: environment variable 'GL_HOOK' is not set",
        "notifications[0].secret: environment variable 'GL_HOOK' is not set",
        *[
            f"workflows.autoproject-workflow-dev.triggers[{i}].repo: repo 'voting-app' has no "
            "gitlab_project, so no hook names it"
            for i in range(3)
        ],
    ]


def test_a_gitlab_project_needs_the_gitlab_section() -> None:
    text = GOOD.replace("default_branch: master}", "default_branch: master, gitlab_project: a b}")
    assert problems_of(text) == [
        "repos.voting-app.gitlab_project: needs a gitlab section (its url)",
        "repos.voting-app.gitlab_project: 'a b' is neither a path_with_namespace "
        "(group/project) nor a numeric id",
    ]


@pytest.mark.usefixtures("gitlab_env")
def test_unknown_notification_events_are_refused() -> None:
    text = WITH_TRIGGERS.replace("events: [task.failed]", "events: [task.exploded]")
    (problem,) = problems_of(text)
    assert problem.startswith("notifications[0].events[0]: Input should be 'task.created'")


def test_a_repo_may_have_a_webhook_secret_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GL_TOKEN", "glpat-0123456789abcdef")
    monkeypatch.setenv("GL_HOOK", "hook-secret-0123456789")
    own = WITH_TRIGGERS.replace(
        "gitlab_project: demo/voting-app}",
        "gitlab_project: demo/voting-app, gitlab_webhook_secret: voting-own-secret}",
    ).replace(", webhook_secret: env:GL_HOOK}", "}")
    # Triggers of that repo need no config-wide secret, and its own is masked in logs.
    cfg = parse_config(own, base=Path("/cfg"))
    assert "voting-own-secret" in cfg.secret_values()
    broken = GOOD.replace(
        "dyliu: {url: /srv/dyliu.git}", "dyliu: {url: /srv/dyliu.git, gitlab_webhook_secret: x}"
    )
    assert problems_of(broken) == [
        "repos.dyliu.gitlab_webhook_secret: must be at least 8 characters long, or it could "
        "not be masked in job logs (this one has 1)",
        "repos.dyliu.gitlab_webhook_secret: needs the repo's gitlab_project",
    ]
