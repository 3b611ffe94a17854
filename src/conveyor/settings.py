"""The configuration file users write, validated as a whole.

`load_config(path)` reads the YAML, applies `CONVEYOR_*` environment overrides and
returns a frozen `Config`, or raises `ConfigError` listing every problem with its key
path (`services.redis3.build.repos[1]: unknown repo 'dyliu'`). Nothing happens at
import time.
"""

import copy
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.config_checks import cross_reference_problems
from conveyor.domain.durations import parse_duration
from conveyor.domain.masking import url_secrets
from conveyor.domain.refs import branch_name_problem

PERMISSIONS = ("task:view", "task:create", "task:restart", "task:cancel")
Permission = Literal["task:view", "task:create", "task:restart", "task:cancel"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _check_branch(value: str) -> str:
    problem = branch_name_problem(value)
    if problem:
        raise ValueError(f"branch name {value!r} {problem}")
    return value


def _check_public_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError(f"must be an http(s) URL, not {value!r}")
    return value.rstrip("/")


Seconds = Annotated[int, BeforeValidator(parse_duration)]
BranchName = Annotated[StrictStr, AfterValidator(_check_branch)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepoConfig(_Strict):
    url: StrictStr = Field(min_length=1, description="git URL or local path of the repository")
    default_branch: BranchName = Field("main", description="branch built when a request omits it")


class BuildConfig(_Strict):
    repos: list[StrictStr] = Field(min_length=1, description="repos checked out for the build")
    script: StrictStr = Field(min_length=1, description="bash script run in the workspace")
    variables: dict[StrictStr, StrictStr] = Field(
        default_factory=dict,
        description="the variables a task's `targets[].envs` may set, with their defaults; "
        "they reach the build only",
    )
    outputs: list[StrictStr] = Field(
        default_factory=list,
        description="names the build may hand its deploy through $CONVEYOR_OUTPUT",
    )
    timeout: Seconds = Field(3600, description="build step timeout (default 1h)")
    queue: StrictStr | None = Field(None, description="celery queue; default: `queue`")


class DeployConfig(_Strict):
    script: StrictStr = Field(min_length=1, description="bash script run in the workspace")
    timeout: Seconds = Field(600, description="deploy step timeout (default 10m)")
    queue: StrictStr | None = Field(None, description="celery queue; default: `queue`")


Sandbox = Literal["none", "bubblewrap"]


class ServiceConfig(_Strict):
    build: BuildConfig
    deploy: DeployConfig
    sandbox: Sandbox | None = Field(None, description="overrides the config-wide `sandbox`")
    network: StrictBool = Field(
        True, description="false: the service's jobs get no network (needs bubblewrap)"
    )


class EnvConfig(_Strict):
    vars: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    secrets: dict[StrictStr, StrictStr] = Field(
        default_factory=dict,
        description="variables like vars whose values are masked in job logs; "
        "a value `env:NAME` is read from the server's environment",
    )

    def resolved_secrets(self) -> dict[str, str]:
        """The secrets' values: `env:NAME` read from this process's environment."""
        return {
            k: os.environ.get(v.removeprefix("env:"), "") if v.startswith("env:") else v
            for k, v in self.secrets.items()
        }


class WorkflowConfig(_Strict):
    env: StrictStr = Field(description="the workflow's default environment")
    envs: list[StrictStr] = Field(default_factory=list, description="other allowed environments")
    services: list[StrictStr] = Field(min_length=1)
    parallel: StrictBool = Field(False, description="run this workflow's tasks at once")

    @property
    def allowed_envs(self) -> frozenset[str]:
        return frozenset([self.env, *self.envs])


class RoleConfig(_Strict):
    permissions: list[Permission] = Field(min_length=1)
    workflows: list[StrictStr] = Field(min_length=1, description="glob patterns of workflow names")


class Config(_Strict):
    public_url: Annotated[StrictStr, AfterValidator(_check_public_url)] = "http://127.0.0.1:8080"
    database_url: StrictStr = "sqlite:///conveyor.db"
    executor: Literal["local", "celery"] = "local"
    broker_url: StrictStr | None = None
    queue: StrictStr = Field("conveyor", description="celery queue of jobs naming none")
    data_dir: Path = Path(".conveyor")
    max_parallel_tasks: StrictInt = Field(4, ge=1, le=1000, description="tasks running at once")
    max_parallel_jobs: StrictInt = Field(
        8, ge=1, le=1000, description="job processes at once (local)"
    )
    cancel_grace: Seconds = Field(10, description="SIGTERM to SIGKILL on cancel or timeout")
    heartbeat_timeout: Seconds = Field(60, description="a running job silent this long is lost")
    queue_timeout: Seconds = Field(
        3600, description="celery: a job no worker takes this long after it was sent fails"
    )
    log_max_bytes: StrictInt = Field(
        50 * 2**20, ge=1024, description="per job log; the rest is cut"
    )
    sandbox: Sandbox = Field(
        "none", description="how jobs are confined: none, or bubblewrap (docs/security.md)"
    )
    run_as: StrictStr | None = Field(
        None, description="an unprivileged user that jobs run as (the runner must be root)"
    )
    repos: dict[StrictStr, RepoConfig] = Field(default_factory=dict)
    services: dict[StrictStr, ServiceConfig] = Field(default_factory=dict)
    envs: dict[StrictStr, EnvConfig] = Field(default_factory=dict)
    workflows: dict[StrictStr, WorkflowConfig] = Field(default_factory=dict)
    roles: dict[StrictStr, RoleConfig] = Field(default_factory=dict)
    # The file this config was read from, if any: a sandboxed job must not see it.
    _source: Path | None = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        return self._source

    def sandbox_of(self, service: str) -> Sandbox:
        svc = self.services.get(service)
        return svc.sandbox if svc is not None and svc.sandbox is not None else self.sandbox

    def network_of(self, service: str) -> bool:
        svc = self.services.get(service)
        return svc.network if svc is not None else True

    def secret_values(self) -> list[str]:
        """Every secret of every env, and the credentials in repo URLs: masked in every
        job's log, whatever its env."""
        values = [v for env in self.envs.values() for v in env.resolved_secrets().values()]
        return values + [s for repo in self.repos.values() for s in url_secrets(repo.url)]


class EnvOverrides(BaseSettings):
    """Values that deployments keep out of the file (a database password, say)."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    database_url: str | None = None
    public_url: str | None = None
    broker_url: str | None = None


class ConfigError(Exception):
    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: invalid configuration\n" + "\n".join(self.problems))


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a config that says a thing twice is an
    error. Every such key is noted (not only the first), so one run reports them all."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            loader.duplicates.append(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return dict(loader.construct_pairs(node, deep=True))


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _load_yaml(text: str) -> tuple[Any, list[str]]:
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


def format_loc(loc: Iterable[int | str]) -> str:
    """('services', 'redis3', 'build', 'repos', 1) -> 'services.redis3.build.repos[1]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _pydantic_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = format_loc(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}" if loc else msg)
    return problems


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Relative data_dir and SQLite paths are relative to the config file, not the cwd."""
    data_dir = Path(str(raw.get("data_dir", ".conveyor")))
    raw["data_dir"] = data_dir if data_dir.is_absolute() else base / data_dir
    url = raw.get("database_url")
    if isinstance(url, str) and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        raw["database_url"] = f"sqlite:///{base / url.removeprefix('sqlite:///')}"


def parse_config(text: str, source: str = "<config>", base: Path | None = None) -> Config:
    """Validate the YAML `text`; paths in it are relative to `base`."""
    try:
        raw, duplicates = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the file must hold a mapping of keys (public_url, repos, …)"])
    overrides = EnvOverrides()
    for key in ("database_url", "public_url", "broker_url"):
        value = getattr(overrides, key)
        if value is not None:
            raw[key] = value
    _resolve_paths(raw, (base or Path.cwd()).resolve())
    cfg, problems, set_aside = _validate(raw)
    if cfg is not None:
        # What refers to a part set aside as broken is not reported again.
        across = cross_reference_problems(cfg)
        problems += [p for p in across if not p.endswith(tuple(set_aside))]
    if duplicates or problems or cfg is None:
        raise ConfigError(source, duplicates + problems)
    return cfg


_NAMED = {"repos": "repo", "services": "service", "envs": "env", "workflows": "workflow"}


def _validate(raw: dict[str, Any]) -> tuple[Config | None, list[str], list[str]]:
    """The config, what is wrong with its values, and how the parts set aside would be
    referred to ("unknown service 'x'"). What is wrong is set aside and the rest checked
    again, so the checks across parts run in the same pass: one run of `check-config`
    lists every problem."""
    try:
        return Config.model_validate(raw), [], []
    except ValidationError as exc:
        problems = _pydantic_problems(exc)
        errors = exc.errors()
    data = copy.deepcopy(raw)
    set_aside: list[str] = []
    for _ in range(50):  # each round removes at least one broken part
        for err in errors:
            loc = err["loc"][:-1] if err["type"] == "missing" else err["loc"]
            _remove(data, loc)
            if len(loc) >= 2 and loc[0] in _NAMED:
                set_aside.append(f"unknown {_NAMED[str(loc[0])]} {loc[1]!r}")
            if loc and isinstance(loc[-1], int):
                break  # the next errors' indices in that list have moved: check again
        try:
            return Config.model_validate(data), problems, set_aside
        except ValidationError as exc:
            errors = exc.errors()
    return None, problems, set_aside


def _remove(data: Any, loc: tuple[int | str, ...]) -> None:
    """Delete the part of `data` at `loc`, if it is there."""
    if not loc:
        return
    for part in loc[:-1]:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(data, dict):
        data.pop(loc[-1], None)
    elif isinstance(data, list) and isinstance(loc[-1], int) and loc[-1] < len(data):
        del data[loc[-1]]


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    cfg = parse_config(text, source=str(path), base=path.parent)
    cfg._source = path.resolve()
    return cfg
