"""The configuration file users write, validated as a whole.

`load_config(path)` reads the YAML, applies `CONVEYOR_*` environment overrides and
returns a frozen `Config`, or raises `ConfigError` listing every problem with its key
path (`services.redis3.build.repos[1]: unknown repo 'dyliu'`). Nothing happens at
import time.
"""

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

from conveyor.domain.durations import parse_duration
from conveyor.domain.masking import MIN_SECRET_CHARS, url_secrets
from conveyor.domain.refs import branch_name_problem
from conveyor.domain.variables import (
    repo_variables,
    variable_name_problem,
    variable_value_problem,
)

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
    """PyYAML keeps the last of two equal keys; a config that says a thing twice is an error."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {line})"
            )
        seen.add(key)
    return dict(loader.construct_pairs(node, deep=True))


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


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


def _cross_reference_problems(cfg: Config) -> list[str]:
    problems = []
    for kind, names in (
        ("repo", cfg.repos),
        ("service", cfg.services),
        ("env", cfg.envs),
        ("workflow", cfg.workflows),
        ("role", cfg.roles),
    ):
        for name in names:
            if not _NAME.fullmatch(name):
                problems.append(
                    f"{kind}s.{name}: a {kind} name may hold only letters, digits, '.', '_', '-'"
                    " and must start with a letter or digit"
                )
    for sname, svc in cfg.services.items():
        for i, repo in enumerate(svc.build.repos):
            if repo not in cfg.repos:
                problems.append(f"services.{sname}.build.repos[{i}]: unknown repo {repo!r}")
            if repo in svc.build.repos[:i]:
                problems.append(f"services.{sname}.build.repos[{i}]: repo {repo!r} listed twice")
    problems += _variable_clash_problems(cfg)
    for wname, wf in cfg.workflows.items():
        if wf.env not in cfg.envs:
            problems.append(f"workflows.{wname}.env: unknown env {wf.env!r}")
        for i, env in enumerate(wf.envs):
            if env not in cfg.envs:
                problems.append(f"workflows.{wname}.envs[{i}]: unknown env {env!r}")
        for i, svc_name in enumerate(wf.services):
            if svc_name not in cfg.services:
                problems.append(f"workflows.{wname}.services[{i}]: unknown service {svc_name!r}")
            if svc_name in wf.services[:i]:
                problems.append(
                    f"workflows.{wname}.services[{i}]: service {svc_name!r} listed twice"
                )
    for ename, env_cfg in cfg.envs.items():
        for key, value in env_cfg.secrets.items():
            if key in env_cfg.vars:
                problems.append(f"envs.{ename}.secrets.{key}: also given in vars")
            name = value.removeprefix("env:")
            if value.startswith("env:") and name not in os.environ:
                problems.append(
                    f"envs.{ename}.secrets.{key}: environment variable {name!r} is not set"
                )
                continue
            resolved = os.environ[name] if value.startswith("env:") else value
            if len(resolved) < MIN_SECRET_CHARS:
                # Masking a 3-character value would garble ordinary output, and not
                # masking it silently would be worse: refuse it.
                problems.append(
                    f"envs.{ename}.secrets.{key}: a secret must be at least {MIN_SECRET_CHARS} "
                    f"characters long, or it could not be masked in job logs "
                    f"(this one has {len(resolved)})"
                )
    for sname in cfg.services:
        if not cfg.services[sname].network and cfg.sandbox_of(sname) != "bubblewrap":
            problems.append(
                f"services.{sname}.network: false needs sandbox: bubblewrap, the only way "
                "Conveyor has to take a job's network away"
            )
    if cfg.executor == "celery" and not cfg.broker_url:
        problems.append("broker_url: required when executor is 'celery'")
    return problems


def _variable_clash_problems(cfg: Config) -> list[str]:
    """A build variable or output must not share its name with a variable Conveyor or the
    env sets for the job: its value would otherwise be silently overridden, or override."""
    problems = []
    for sname, svc in cfg.services.items():
        declared = svc.build.variables
        for name, value in declared.items():
            for problem in (variable_name_problem(name), variable_value_problem(value)):
                if problem:
                    problems.append(f"services.{sname}.build.variables.{name}: {problem}")
        for i, name in enumerate(svc.build.outputs):
            problem = variable_name_problem(name)
            if name in svc.build.outputs[:i]:
                problem = "listed twice"
            if problem:
                problems.append(f"services.{sname}.build.outputs[{i}]: {name!r} {problem}")
        # The names this service's build itself decides, by the key they are under.
        owned = {"variables": set(declared), "outputs": set(svc.build.outputs)}
        for repo in svc.build.repos:
            for kind, names in owned.items():
                for name in sorted(set(repo_variables(repo)) & names):
                    where = f"services.{sname}.build.{kind}.{name}"
                    problems.append(f"{where}: Conveyor sets it (repo {repo!r})")
        # The envs this service may run in, each with a workflow that takes it there.
        reach: dict[str, str] = {}
        for wname, wf in cfg.workflows.items():
            if sname in wf.services:
                for ename in sorted(wf.allowed_envs & cfg.envs.keys()):
                    reach.setdefault(ename, wname)
        for ename, wname in reach.items():
            env = cfg.envs[ename]
            for kind, env_names in (("vars", set(env.vars)), ("secrets", set(env.secrets))):
                for own, names in owned.items():
                    for name in sorted(env_names & names):
                        problems.append(
                            f"services.{sname}.build.{own}.{name}: also in "
                            f"envs.{ename}.{kind} (workflow {wname!r} runs it there)"
                        )
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
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
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
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, _pydantic_problems(exc)) from exc
    problems = _cross_reference_problems(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    cfg = parse_config(text, source=str(path), base=path.parent)
    cfg._source = path.resolve()
    return cfg
